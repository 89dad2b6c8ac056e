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

    // Filled by the worker's (single) thread on first use, for as long as the entry lives:
    /// file: the whole head of a plain 200 to an HTTP/1.1 keep-alive request for the file itself
    /// (no range, no encoding), made again when the Date (or `head_vary`) changes.
    mutable std::string head;
    mutable std::string head_date;
    mutable bool head_vary = false;
    /// file: its precompressed siblings (FILE.br, FILE.gz; null where none), once looked up.
    mutable bool siblings_known = false;
    mutable std::shared_ptr<const CachedFile> siblings[2];
};

/// An open-file cache for the static root, like nginx's open_file_cache: a URL path is
/// resolved (one openat2 that cannot leave the root), opened and fstat'ed once, and the answer
/// kept for `kValidity` (nginx's open_file_cache_valid). Small files' bytes are read with their
/// validators and kept in memory: a consistent snapshot, served with no system call but the
/// write until the validity ends, so a change, a rename over it or a delete is seen within
/// kValidity. A larger file goes out with sendfile from its open descriptor, so each use checks
/// it with one fstat (the length and ETag sent must be those of the bytes): deleted (no links
/// left) it is looked up again, changed in place (size or mtime) it is described anew. A file
/// that appears where nothing was is seen once the entry's validity ends.
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
