#include "duet/pipe.hpp"

#include <string>
#include <system_error>

namespace duet {
namespace detail {

namespace {

int init_pipe(uv_loop_t* loop, uv_pipe_t* pipe) noexcept { return uv_pipe_init(loop, pipe, 0); }

class PipeListenerImpl final : public ListenerImpl {
 public:
  explicit PipeListenerImpl(LoopCore* core) : ListenerImpl(core, reinterpret_cast<uv_handle_t*>(&pipe)) {
    if (int rc = uv_pipe_init(core->uv(), &pipe, 0); rc < 0) throw std::system_error(uv_error(rc), "uv_pipe_init");
    adopt(&pipe);
  }
  uv_pipe_t pipe{};

 private:
  HandlePtr<StreamImpl> make_peer() override { return make_pipe(core()); }
};

// A socket's own or peer path through uv_pipe_getsockname / uv_pipe_getpeername.
std::string name_of(const uv_pipe_t* pipe, bool peer) {
  auto get = [&](std::string& into) {
    std::size_t size = into.size();
    int rc = peer ? uv_pipe_getpeername(pipe, into.data(), &size) : uv_pipe_getsockname(pipe, into.data(), &size);
    if (rc == 0) into.resize(size);
    if (rc == UV_ENOBUFS) into.assign(size + 1, '\0');  // libuv said how much it needs
    return rc;
  };
  std::string name(kMaxPipePath + 1, '\0');
  int rc = get(name);
  if (rc == UV_ENOBUFS) rc = get(name);
  if (rc < 0) throw std::system_error(uv_error(rc), peer ? "uv_pipe_getpeername" : "uv_pipe_getsockname");
  return name;
}

}  // namespace

HandlePtr<StreamImpl> make_pipe(LoopCore* core) {
  return HandlePtr<StreamImpl>(core->make<StreamHandle<uv_pipe_t>>(core, &init_pipe));
}

uv_pipe_t* pipe_handle(StreamImpl* impl) noexcept { return reinterpret_cast<uv_pipe_t*>(impl->handle()); }

int check_pipe_path(const std::string& path) noexcept {
  if (path.empty()) return UV_EINVAL;
  return path.size() > kMaxPipePath ? UV_ENAMETOOLONG : 0;
}

PipeStream pipe_stream(HandlePtr<StreamImpl> impl) noexcept { return PipeStream(std::move(impl)); }

}  // namespace detail

// ---- PipeStream ----------------------------------------------------------------------------------------

PipeStream PipeStream::open(Loop& loop, uv_file fd) {
  PipeStream s(detail::make_pipe(&loop.core()));
  if (int rc = uv_pipe_open(s.native(), fd); rc < 0)
    throw std::system_error(uv_error(rc), "duet::PipeStream::open(" + std::to_string(fd) + ")");
  return s;
}

uv_pipe_t* PipeStream::native() const noexcept { return impl_ ? detail::pipe_handle(impl_.get()) : nullptr; }

std::string PipeStream::local_name() const {
  return detail::name_of(detail::pipe_handle(open_impl("local_name")), false);
}

std::string PipeStream::peer_name() const { return detail::name_of(detail::pipe_handle(open_impl("peer_name")), true); }

// ---- PipeListener --------------------------------------------------------------------------------------

PipeListener::PipeListener(Loop& loop, const std::string& path, int backlog) {
  auto fail = [&](int rc) { throw std::system_error(uv_error(rc), "duet::PipeListener: cannot listen on " + path); };
  if (int rc = detail::check_pipe_path(path); rc < 0) fail(rc);
  auto* impl = loop.core().make<detail::PipeListenerImpl>(&loop.core());
  impl_ = detail::HandlePtr<detail::ListenerImpl>(impl);
  int rc = uv_pipe_bind(&impl->pipe, path.c_str());
  if (rc == 0) rc = impl->listen(backlog);
  if (rc < 0) {
    impl_.reset();
    fail(rc);
  }
}

std::string PipeListener::local_name() const {
  if (!impl_) detail::throw_closed("local_name");
  return detail::name_of(reinterpret_cast<const uv_pipe_t*>(impl_->handle()), false);
}

void PipeListener::chmod(PipeAccess access) {
  if (!impl_) detail::throw_closed("chmod");
  if (int rc = uv_pipe_chmod(reinterpret_cast<uv_pipe_t*>(impl_->handle()), static_cast<int>(access)); rc < 0)
    throw std::system_error(uv_error(rc), "duet::PipeListener::chmod");
}

}  // namespace duet
