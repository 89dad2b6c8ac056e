#include "daemon/http/file_cache.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include "daemon/http/http_date.hpp"

namespace workerd::http {
namespace {

constexpr int kOpenFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;  // NONBLOCK: a FIFO must not wait

bool same_version(const CachedFile& e, const struct stat& st) {
    // (The same open file: its device and inode cannot change, only its size and mtime.)
    return e.file.size == static_cast<std::uint64_t>(st.st_size) &&
           e.file.mtime == st.st_mtim.tv_sec && e.file.mtime_nsec == st.st_mtim.tv_nsec;
}

// The whole of a small file; false when it changed size under the read.
bool read_all(int fd, std::uint64_t size, std::string& out) {
    out.resize(size);
    std::uint64_t got = 0;
    while (got < size) {
        const ssize_t n = ::pread(fd, out.data() + got, size - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<std::uint64_t>(n);
    }
    return true;
}

}  // namespace

FileCache::FileCache(std::string canonical_root)
    : root_(std::move(canonical_root)), root_fd_(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)) {
    if (!root_fd_) throw std::invalid_argument("--root " + root_ + ": cannot open the directory");
}

std::shared_ptr<const CachedFile> FileCache::find(const std::string& url_path, std::chrono::steady_clock::time_point now) {
    const auto it = entries_.find(url_path);
    if (it != entries_.end() && now < it->second->valid_until) {
        CachedFile& e = *it->second;
        e.used = now;
        // In memory: a snapshot, trusted for the validity. Sent from the file: checked.
        if (e.kind != CachedFile::Kind::file || e.in_memory) return it->second;
        struct stat st {};
        if (::fstat(e.fd.get(), &st) == 0 && st.st_nlink > 0) {
            if (same_version(e, st)) return it->second;
            // Changed in place: a new entry (a response still being written keeps the old one).
            auto fresh = std::make_shared<CachedFile>();
            fresh->kind = CachedFile::Kind::file;
            fresh->fd.reset(::fcntl(e.fd.get(), F_DUPFD_CLOEXEC, 0));
            fresh->file.path = e.file.path;
            fresh->type = e.type;
            fresh->valid_until = e.valid_until;
            fresh->used = now;
            if (fresh->fd) {
                memory_ -= e.content.size();
                describe(*fresh, st);
                it->second = fresh;
                return fresh;
            }
        }
        // Deleted (or unreadable): looked up again.
    }
    if (it != entries_.end()) {
        memory_ -= it->second->content.size();
        entries_.erase(it);
    }
    make_room(now);
    auto entry = resolve(url_path, now);
    if (entry->kind == CachedFile::Kind::unavailable && release_idle()) entry = resolve(url_path, now);
    if (entry->kind != CachedFile::Kind::unavailable) entries_.emplace(url_path, entry);
    return entry;
}

UniqueFd FileCache::open_beneath(const std::string& rel) {
    if (openat2_) {
        open_how how{};
        how.flags = kOpenFlags;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        const long fd = ::syscall(SYS_openat2, root_fd_.get(), rel.c_str(), &how, sizeof how);
        if (fd >= 0) return UniqueFd(static_cast<int>(fd));
        if (errno == EMFILE || errno == ENFILE) {
            out_of_fds_ = true;
            return UniqueFd();
        }
        if (errno == ENOSYS) {
            openat2_ = false;
        } else if (errno != EXDEV) {
            return UniqueFd();  // ENOENT, EACCES, ELOOP...
        }
        // EXDEV: the path left the root on its way, through ".." or an absolute symlink;
        // the real path decides below (an absolute link to a file inside the root is fine).
    }
    // Old kernels, and the paths openat2 would not follow: the real path (every link
    // followed) decides, then it is opened without following links.
    const std::string real = real_path(root_ + "/" + rel);
    if (real.empty() || !inside_root(root_, real)) return UniqueFd();
    UniqueFd fd(::open(real.c_str(), kOpenFlags | O_NOFOLLOW));
    if (!fd && (errno == EMFILE || errno == ENFILE)) out_of_fds_ = true;
    return fd;
}

std::shared_ptr<CachedFile> FileCache::resolve(const std::string& url_path, std::chrono::steady_clock::time_point now) {
    auto e = std::make_shared<CachedFile>();
    e->valid_until = now + kValidity;
    e->used = now;
    std::string rel = url_path.size() > 1 ? url_path.substr(1) : std::string(".");
    out_of_fds_ = false;
    UniqueFd fd = open_beneath(rel);
    struct stat st {};
    if (out_of_fds_) e->kind = CachedFile::Kind::unavailable;
    if (!fd || ::fstat(fd.get(), &st) != 0) return e;
    if (S_ISDIR(st.st_mode)) {
        if (url_path.empty() || url_path.back() != '/') {
            e->kind = CachedFile::Kind::redirect;
            e->location = url_path + "/";
            return e;
        }
        rel = url_path.substr(1) + "index.html";
        fd = open_beneath(rel);
        if (out_of_fds_) e->kind = CachedFile::Kind::unavailable;
        if (!fd || ::fstat(fd.get(), &st) != 0) return e;
    }
    if (!S_ISREG(st.st_mode)) return e;
    e->kind = CachedFile::Kind::file;
    e->fd = std::move(fd);
    e->file.path = "/" + rel;
    e->type = content_type_for(e->file.path);
    describe(*e, st);
    return e;
}

void FileCache::describe(CachedFile& e, const struct stat& st) {
    e.file.size = static_cast<std::uint64_t>(st.st_size);
    e.file.mtime = st.st_mtim.tv_sec;
    e.file.mtime_nsec = st.st_mtim.tv_nsec;
    e.etag = make_etag(e.file);
    e.last_modified = format_http_date(e.file.mtime);
    e.content.clear();
    e.in_memory = false;
    if (e.file.size <= kInMemoryMax && memory_ + e.file.size <= kMemoryBudget) {
        if (read_all(e.fd.get(), e.file.size, e.content)) {
            e.in_memory = true;
            memory_ += e.content.size();
        } else {
            e.content.clear();  // changing as we read: sent from the file, checked as it goes
        }
    }
}

bool FileCache::release_idle() {
    bool released = false;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second->kind == CachedFile::Kind::file && it->second.use_count() == 1) {
            memory_ -= it->second->content.size();
            it = entries_.erase(it);
            released = true;
        } else {
            ++it;
        }
    }
    return released;
}

void FileCache::make_room(std::chrono::steady_clock::time_point now) {
    if (entries_.size() < kMaxEntries) return;
    // Expired entries first; then the least recently used one.
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second->valid_until <= now) {
            memory_ -= it->second->content.size();
            it = entries_.erase(it);
        } else {
            ++it;
        }
    }
    while (entries_.size() >= kMaxEntries) {
        auto oldest = entries_.begin();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (it->second->used < oldest->second->used) oldest = it;
        }
        memory_ -= oldest->second->content.size();
        entries_.erase(oldest);
    }
}

}  // namespace workerd::http
