/*
 * socket.c - native transport.  See socket.h.  POSIX only.
 */
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

int64_t pgc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pgc_sock_wait(int fd, int for_write, int64_t deadline)
{
    struct pollfd p;

    p.fd = fd;
    p.events = for_write ? POLLOUT : POLLIN;
    for (;;) {
        int timeout = -1, rc;

        if (deadline > 0) {
            int64_t left = deadline - pgc_now_ms();

            if (left <= 0)
                return 0;
            timeout = left > 1000000000 ? 1000000000 : (int)left;
        }
        rc = poll(&p, 1, timeout);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/*
 * Connects one socket to one address.  Returns the descriptor, or -1
 * with errno set (ETIMEDOUT at the deadline).
 */
static int connect_one(int family, const struct sockaddr *addr,
                       socklen_t addrlen, int64_t deadline)
{
    int fd, rc, soerr = 0;
    socklen_t len = sizeof soerr;

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (family != AF_UNIX) {
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }

    do {
        rc = connect(fd, addr, addrlen);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EAGAIN)
        goto fail;

    rc = pgc_sock_wait(fd, 1, deadline);
    if (rc == 0)
        errno = ETIMEDOUT;
    if (rc <= 0)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        goto fail;
    if (soerr != 0) {
        errno = soerr;
        goto fail;
    }
    return fd;

fail:
    rc = errno;
    close(fd);
    errno = rc;
    return -1;
}

static int connect_unix(const char *dir, int port, int64_t deadline,
                        char *err, size_t errlen)
{
    struct sockaddr_un sun;
    int n, fd;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    n = snprintf(sun.sun_path, sizeof sun.sun_path, "%s/.s.PGSQL.%d",
                 dir, port);
    if (n < 0 || (size_t)n >= sizeof sun.sun_path) {
        snprintf(err, errlen, "Unix socket path for '%s' is too long",
                 dir);
        return -1;
    }
    fd = connect_one(AF_UNIX, (struct sockaddr *)&sun, sizeof sun,
                     deadline);
    if (fd < 0)
        snprintf(err, errlen, "could not connect to Unix socket '%s': %s",
                 sun.sun_path, strerror(errno));
    return fd;
}

/* Formats an address for error messages. */
static void address_text(const struct addrinfo *ai, char *out, size_t n)
{
    const void *in;

    if (ai->ai_family == AF_INET)
        in = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    else
        in = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    if (inet_ntop(ai->ai_family, in, out, (socklen_t)n) == NULL)
        snprintf(out, n, "?");
}

int pgc_sock_connect(const char *host, int port, int64_t deadline,
                     char *err, size_t errlen)
{
    struct addrinfo hints, *list = NULL, *ai;
    char service[16];
    size_t used;
    int rc, fd = -1;

    if (host[0] == '/')
        return connect_unix(host, port, deadline, err, errlen);

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        snprintf(err, errlen, "could not resolve host '%s': %s", host,
                 gai_strerror(rc));
        return -1;
    }

    used = (size_t)snprintf(err, errlen, "could not connect to %s port %d:",
                            host, port);
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN];

        fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen,
                         deadline);
        if (fd >= 0)
            break;
        address_text(ai, addr, sizeof addr);
        if (used < errlen)
            used += (size_t)snprintf(err + used, errlen - used, "%s %s: %s",
                                     ai == list ? "" : ";", addr,
                                     strerror(errno));
        if (errno == ETIMEDOUT && deadline > 0 && pgc_now_ms() >= deadline)
            break;
    }
    freeaddrinfo(list);
    return fd;
}

int pgc_sock_connect_peer(int fd, int64_t deadline, char *err,
                          size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int peer;

    if (getpeername(fd, (struct sockaddr *)&addr, &len) < 0) {
        snprintf(err, errlen, "cannot find the server's address: %s",
                 strerror(errno));
        return -1;
    }
    peer = connect_one(addr.ss_family, (struct sockaddr *)&addr, len,
                       deadline);
    if (peer < 0)
        snprintf(err, errlen, "could not connect to the server again: %s",
                 strerror(errno));
    return peer;
}

ssize_t pgc_sock_read(int fd, void *p, size_t n)
{
    ssize_t rc;

    do {
        rc = recv(fd, p, n, 0);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

ssize_t pgc_sock_write(int fd, const void *p, size_t n)
{
    ssize_t rc;

    do {
        rc = send(fd, p, n, MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

void pgc_sock_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int pgc_sock_is_ip_literal(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, addr) == 1 ||
           inet_pton(AF_INET6, host, addr) == 1;
}
