#include "daemon/os/listen_queue.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "daemon/os/unique_fd.hpp"

namespace workerd {
namespace {

std::optional<ListenQueue> tcp_queue(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
    // For a listening socket the kernel reports the accept queue in these two fields.
    return ListenQueue{info.tcpi_unacked, info.tcpi_sacked};
}

std::optional<ListenQueue> unix_queue(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::nullopt;
    UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl) return std::nullopt;
    struct {
        nlmsghdr header;
        unix_diag_req request;
    } message{};
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST;
    message.request.sdiag_family = AF_UNIX;
    message.request.udiag_states = ~0U;
    message.request.udiag_ino = static_cast<__u32>(st.st_ino);
    message.request.udiag_show = UDIAG_SHOW_RQLEN;
    message.request.udiag_cookie[0] = message.request.udiag_cookie[1] = ~0U;  // no cookie check
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(nl.get(), &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
        return std::nullopt;
    }
    alignas(nlmsghdr) char buf[8192];
    ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    int remaining = static_cast<int>(n);
    // NLMSG_OK compares the header's unsigned length with the signed remainder (signed on
    // purpose: NLMSG_NEXT may step past the end, and only a negative remainder stops there).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, remaining); h = NLMSG_NEXT(h, remaining)) {
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return std::nullopt;
        auto* reply = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
        int left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *reply));
        for (auto* a = reinterpret_cast<rtattr*>(reply + 1); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
            if (a->rta_type == UNIX_DIAG_RQLEN) {
                unix_diag_rqlen q{};
                std::memcpy(&q, RTA_DATA(a), sizeof q);
                return ListenQueue{q.udiag_rqueue, q.udiag_wqueue};
            }
        }
    }
#pragma GCC diagnostic pop
    return std::nullopt;
}

}  // namespace

std::optional<ListenQueue> listen_queue(int fd, bool unix_socket) {
    return unix_socket ? unix_queue(fd) : tcp_queue(fd);
}

}  // namespace workerd
