#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "daemon/http/static_files.hpp"
#include "daemon/os/unique_fd.hpp"

namespace workerd::http {

/// What one URL path under the static root led to when last looked at: an open file (with its
/// validators, and its bytes when small), a redirect to the directory's '/', or nothing.
struct CachedFile {
    /// unavailable: the process is out of descriptors (EMFILE/ENFILE) even after closing the
    /// cached ones nobody is sending: answered 503, and not kept.
    enum class Kind { file, redirect, missing, unavailable } kind = Kind::missing;
    UniqueFd fd;                    ///< file: open for reading
    StaticFile file;                ///< file: size and mtime (path: the name it was opened by)
    std::string etag;               ///< file
    std::string last_modified;      ///< file
    std::string_view type;          ///< file: Content-Type, by the name's extension
    std::string content;            ///< file: the bytes, when `in_memory`
    bool in_memory = false;
    std::string location;           ///< redirect: the URL path with a trailing '/'
    std::chrono::steady_clock::time_point valid_until;
    std::chrono::steady_clock::time_point used;
};

/// An open-file cache for the static root, like nginx's open_file_cache: a URL path is
/// resolved (one openat2 that cannot leave the root), opened and fstat'ed once, and the answer
/// kept for `kValidity`. Each use of a cached file checks it with one fstat on its open
/// descriptor: a file deleted (no links left) is looked up again, one changed in place (size or
/// mtime) is re-read, so neither is ever served stale; a file replaced by rename, or one that
/// appears where nothing was, is seen once the entry's validity ends. Small files' bytes are
/// kept in memory (one write sends head and body); the rest go out with sendfile.
class FileCache {
public:
    static constexpr std::chrono::milliseconds kValidity{1000};
    static constexpr std::size_t kMaxEntries = 512;             ///< past this the least recently used go
    static constexpr std::uint64_t kInMemoryMax = 32 * 1024;    ///< files up to this size are kept in memory
    static constexpr std::uint64_t kMemoryBudget = 8 * 1024 * 1024;  ///< for all of them together

    /// `canonical_root`: the root as realpath gives it. Throws std::invalid_argument when it
    /// cannot be opened.
    explicit FileCache(std::string canonical_root);

    /// The entry for `url_path` (decoded, ".."-free, starting with '/'), looked up again when
    /// its validity has ended or its file was deleted. Never null.
    std::shared_ptr<const CachedFile> find(const std::string& url_path, std::chrono::steady_clock::time_point now);

    std::size_t size() const { return entries_.size(); }

private:
    std::shared_ptr<CachedFile> resolve(const std::string& url_path, std::chrono::steady_clock::time_point now);
    /// Opens `rel` (relative to the root, "." for the root itself) beneath the root.
    UniqueFd open_beneath(const std::string& rel);
    /// Sets size, mtime, validators (and the bytes, when small) from `st`.
    void describe(CachedFile& entry, const struct stat& st);
    void make_room(std::chrono::steady_clock::time_point now);
    /// Closes the cached files no response is sending (out of descriptors); false if none.
    bool release_idle();

    std::string root_;
    UniqueFd root_fd_;
    bool openat2_ = true;  ///< false once the kernel said ENOSYS
    bool out_of_fds_ = false;  ///< the last open_beneath failed with EMFILE/ENFILE
    std::unordered_map<std::string, std::shared_ptr<CachedFile>> entries_;
    std::uint64_t memory_ = 0;  ///< bytes held in memory by all entries
};

}  // namespace workerd::http
