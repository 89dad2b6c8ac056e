#include "daemon/os/load_board.hpp"

#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <utility>

namespace workerd {

UniqueFd LoadBoard::create() {
    UniqueFd fd(::memfd_create("workerd-load-board", MFD_CLOEXEC));
    if (!fd) throw std::runtime_error(std::string("memfd_create failed: ") + std::strerror(errno));
    // ftruncate zero-fills, which is every entry's "not taking part" state.
    if (::ftruncate(fd.get(), sizeof(Table)) != 0) {
        throw std::runtime_error(std::string("ftruncate load board failed: ") + std::strerror(errno));
    }
    unsigned char token[sizeof(Table::token)];
    if (::getrandom(token, sizeof token, 0) != static_cast<ssize_t>(sizeof token) ||
        ::pwrite(fd.get(), token, sizeof token, 0) != static_cast<ssize_t>(sizeof token)) {  // (at the table's start)
        throw std::runtime_error(std::string("load board token: ") + std::strerror(errno));
    }
    return fd;
}

std::optional<LoadBoard> LoadBoard::attach(int fd, int slot) {
    struct stat st {};
    if (slot < 0 || slot >= kSlots || ::fstat(fd, &st) != 0 ||
        st.st_size != static_cast<off_t>(sizeof(Table))) {
        return std::nullopt;
    }
    void* p = ::mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return std::nullopt;
    auto* table = static_cast<Table*>(p);
    std::int32_t used = table->slots_used.load(std::memory_order_relaxed);
    while (used < slot + 1 &&
           !table->slots_used.compare_exchange_weak(used, slot + 1, std::memory_order_relaxed)) {
    }
    LoadBoard board(table, slot);
    table->entries[slot].pid.store(static_cast<std::int32_t>(::getpid()), std::memory_order_relaxed);
    board.set_connections(0);
    board.touch(now_ms());
    return board;
}

LoadBoard::LoadBoard(LoadBoard&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)), slot_(other.slot_) {}

LoadBoard::~LoadBoard() {
    if (table_ != nullptr) {
        leave();
        ::munmap(table_, sizeof(Table));
    }
}

void LoadBoard::set_connections(int n) {
    table_->entries[slot_].connections.store(n, std::memory_order_relaxed);
}

void LoadBoard::touch(std::int64_t now) {
    table_->entries[slot_].seen_ms.store(now, std::memory_order_relaxed);
}

void LoadBoard::set_cpu(int cpu) {
    table_->entries[slot_].cpu_plus_one.store(cpu + 1, std::memory_order_relaxed);
}

std::optional<std::int32_t> LoadBoard::worker_on_cpu(int cpu, int mine, std::int64_t now, int margin) const {
    // Of several there (more workers than CPUs), the one holding the fewest.
    std::optional<std::int32_t> best;
    int fewest = mine + margin;
    const int used = table_->slots_used.load(std::memory_order_relaxed);
    for (int i = 0; i < used && i < kSlots; ++i) {
        if (i == slot_) continue;
        const Entry& e = table_->entries[i];
        if (e.cpu_plus_one.load(std::memory_order_relaxed) != cpu + 1) continue;
        const std::int64_t seen = e.seen_ms.load(std::memory_order_relaxed);
        if (seen == 0 || now - seen > kStaleAfterMs) continue;
        const int connections = e.connections.load(std::memory_order_relaxed);
        const std::int32_t pid = e.pid.load(std::memory_order_relaxed);
        if (connections < fewest && pid > 0) {
            fewest = connections;
            best = pid;
        }
    }
    return best;
}

std::string LoadBoard::token() const {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : table_->token) {
        out += kHex[b >> 4];
        out += kHex[b & 15];
    }
    return out;
}

void LoadBoard::leave() { table_->entries[slot_].seen_ms.store(0, std::memory_order_relaxed); }

bool LoadBoard::peer_has_room(int mine, std::int64_t now, int margin) const {
    if (mine < margin) return false;
    const int used = table_->slots_used.load(std::memory_order_relaxed);
    for (int i = 0; i < used && i < kSlots; ++i) {
        if (i == slot_) continue;
        const Entry& e = table_->entries[i];
        const std::int64_t seen = e.seen_ms.load(std::memory_order_relaxed);
        if (seen == 0 || now - seen > kStaleAfterMs) continue;
        if (e.connections.load(std::memory_order_relaxed) <= mine - margin) return true;
    }
    return false;
}

bool LoadBoard::busier(int slot, int mine, std::int64_t now, int margin) const {
    if (slot < 0 || slot >= kSlots) return true;
    const Entry& e = table_->entries[slot];
    const std::int64_t seen = e.seen_ms.load(std::memory_order_relaxed);
    if (seen == 0 || now - seen > kStaleAfterMs) return true;
    return e.connections.load(std::memory_order_relaxed) >= mine + margin;
}

std::int64_t LoadBoard::now_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace workerd
