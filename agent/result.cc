#include "agent/result.h"

#include <cerrno>
#include <cstring>

namespace podvisor::agent {

Error ErrnoError(const std::string& what, int err) {
  Code code = Code::kInternal;
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ESRCH:
      code = Code::kNotFound;
      break;
    case EEXIST:
      code = Code::kAlreadyExists;
      break;
    case EACCES:
    case EPERM:
      code = Code::kPermissionDenied;
      break;
    case EINVAL:
    case ERANGE:
      code = Code::kInvalidArgument;
      break;
    case ENOSPC:
    case ENOMEM:
      code = Code::kResourceExhausted;
      break;
    default:
      break;
  }
  return Error(code, what + ": " + std::strerror(err));
}

}  // namespace podvisor::agent
