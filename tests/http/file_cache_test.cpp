// The bundled worker's open-file cache on real files: what a URL path leads to (the cases the
// realpath lookup had: files, index.html, redirects, nothing outside the root), and how fresh
// a cached answer stays when files change, disappear or appear.
#include "daemon/http/file_cache.hpp"

#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>

#include "tests/support/test_support.hpp"

using namespace workerd::http;
namespace fs = std::filesystem;
using Kind = CachedFile::Kind;

namespace {

std::string bytes_of(const CachedFile& f) {
    if (f.in_memory) return f.content;
    std::string out(f.file.size, '\0');
    const ssize_t n = ::pread(f.fd.get(), out.data(), out.size(), 0);
    out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    return out;
}

}  // namespace

TEST_CASE("lookup: files, index.html, redirects, and nothing outside the root") {
    workerd::test::TempDir dir;
    dir.write("root/index.html", "home");
    dir.write("root/docs/index.html", "docs");
    dir.write("root/a.txt", "aaa");
    dir.write("root/empty/.keep", "");
    dir.write("secret.txt", "outside");
    dir.write("other/index.html", "outside too");
    const std::string root = fs::canonical(dir.path() + "/root").string();
    fs::create_symlink(dir.path() + "/secret.txt", root + "/leak.txt");
    fs::create_symlink(dir.path(), root + "/up");
    fs::create_symlink("../secret.txt", root + "/relative-leak.txt");
    fs::create_symlink(dir.path() + "/other", root + "/otherdir");
    fs::create_symlink(root + "/a.txt", root + "/alias.txt");    // absolute, inside the root
    fs::create_symlink("a.txt", root + "/relative-alias.txt");
    fs::create_symlink(root + "/docs", root + "/docs-alias");    // a directory, absolute, inside
    FileCache cache(root);
    const auto now = std::chrono::steady_clock::now();

    auto a = cache.find("/a.txt", now);
    CHECK(a->kind == Kind::file);
    CHECK(a->file.size == 3);
    CHECK(bytes_of(*a) == "aaa");
    CHECK(a->type == "text/plain; charset=utf-8");
    CHECK(bytes_of(*cache.find("/", now)) == "home");
    CHECK(cache.find("/", now)->type == "text/html; charset=utf-8");
    CHECK(bytes_of(*cache.find("/docs/", now)) == "docs");
    auto redirect = cache.find("/docs", now);
    CHECK(redirect->kind == Kind::redirect);
    CHECK(redirect->location == "/docs/");
    CHECK(cache.find("/missing", now)->kind == Kind::missing);
    CHECK(cache.find("/empty/", now)->kind == Kind::missing);  // no index
    // Symlinks out of the root are refused; those inside it are fine, absolute or relative.
    CHECK(cache.find("/leak.txt", now)->kind == Kind::missing);
    CHECK(cache.find("/relative-leak.txt", now)->kind == Kind::missing);
    CHECK(cache.find("/up/secret.txt", now)->kind == Kind::missing);
    CHECK(cache.find("/otherdir/", now)->kind == Kind::missing);
    CHECK(cache.find("/otherdir/index.html", now)->kind == Kind::missing);
    CHECK(bytes_of(*cache.find("/alias.txt", now)) == "aaa");
    CHECK(bytes_of(*cache.find("/relative-alias.txt", now)) == "aaa");
    CHECK(bytes_of(*cache.find("/docs-alias/", now)) == "docs");
    CHECK(cache.find("/docs-alias", now)->kind == Kind::redirect);
}

TEST_CASE("a changed file is served fresh within the validity, a deleted one no more; a large one at its next use") {
    workerd::test::TempDir dir;
    dir.write("root/page.html", "version 1");
    dir.write("root/big.bin", std::string(FileCache::kInMemoryMax + 1, 'x'));
    const std::string root = fs::canonical(dir.path() + "/root").string();
    FileCache cache(root);
    auto now = std::chrono::steady_clock::now();

    auto first = cache.find("/page.html", now);
    REQUIRE(first->kind == Kind::file);
    CHECK(first->in_memory);
    CHECK(bytes_of(*first) == "version 1");
    CHECK(cache.find("/page.html", now) == first);  // cached: the same entry

    // Rewritten in place: a small file is a snapshot (bytes and ETag read together), served as
    // it was until the validity ends, then fresh.
    dir.write("root/page.html", "version two");
    CHECK(cache.find("/page.html", now + FileCache::kValidity / 2) == first);
    now += FileCache::kValidity;
    auto second = cache.find("/page.html", now);
    CHECK(bytes_of(*second) == "version two");
    CHECK(second->etag != first->etag);
    CHECK(bytes_of(*first) == "version 1");  // a response being written keeps what it had

    // Replaced by rename (a deploy): seen once the validity ends.
    dir.write("root/page.html.new", "version 3");
    fs::rename(root + "/page.html.new", root + "/page.html");
    now += FileCache::kValidity;
    CHECK(bytes_of(*cache.find("/page.html", now)) == "version 3");

    // Deleted: not found once the validity ends.
    fs::remove(root + "/page.html");
    now += FileCache::kValidity;
    CHECK(cache.find("/page.html", now)->kind == Kind::missing);

    // Large files are not kept in memory; they are sent from the open descriptor, so each use
    // checks it (fstat): the length and ETag sent are always the bytes'.
    auto big = cache.find("/big.bin", now);
    REQUIRE(big->kind == Kind::file);
    CHECK_FALSE(big->in_memory);
    CHECK(bytes_of(*big).size() == FileCache::kInMemoryMax + 1);
    dir.write("root/big.bin", std::string(FileCache::kInMemoryMax + 100, 'y'));  // in place, within the validity
    auto bigger = cache.find("/big.bin", now);
    CHECK(bigger->file.size == FileCache::kInMemoryMax + 100);
    CHECK(bigger->etag != big->etag);
    fs::remove(root + "/big.bin");
    CHECK(cache.find("/big.bin", now)->kind == Kind::missing);

    // Nothing there, then a file: "not found" is cached for the validity, no longer.
    CHECK(cache.find("/new.txt", now)->kind == Kind::missing);
    dir.write("root/new.txt", "new");
    CHECK(cache.find("/new.txt", now)->kind == Kind::missing);
    now += FileCache::kValidity;
    CHECK(bytes_of(*cache.find("/new.txt", now)) == "new");
}

TEST_CASE("the cache keeps at most kMaxEntries entries, dropping the least recently used") {
    workerd::test::TempDir dir;
    dir.write("root/keep.txt", "keep");
    const std::string root = fs::canonical(dir.path() + "/root").string();
    FileCache cache(root);
    auto now = std::chrono::steady_clock::now();
    auto keep = cache.find("/keep.txt", now);
    for (std::size_t i = 0; i < FileCache::kMaxEntries * 2; ++i) {
        now += std::chrono::microseconds(1);
        cache.find("/keep.txt", now);  // used all along
        cache.find("/missing-" + std::to_string(i), now);
    }
    CHECK(cache.size() <= FileCache::kMaxEntries);
    CHECK(cache.find("/keep.txt", now) == keep);
}
