/*
 * socket.h - the native transport: TCP to every resolved address (IPv4
 * and IPv6), Unix-domain sockets, waits bounded by deadlines.  POSIX
 * calls only; knows nothing about the protocol or TLS.
 */
#ifndef PGC_SOCKET_H
#define PGC_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Milliseconds on a monotonic clock. */
int64_t pgc_now_ms(void);

/*
 * Opens a non-blocking connection.  For TCP, host is a name or an IP
 * literal and every address it resolves to is tried in turn; for a Unix
 * socket, host is a directory and the socket is host/.s.PGSQL.port.
 * deadline is a pgc_now_ms() value, or 0 for none.  Returns the file
 * descriptor, or -1 with a message in err naming what was tried.
 */
int pgc_sock_connect(const char *host, int port, int64_t deadline,
                     char *err, size_t errlen);

/*
 * Opens a new connection to the address fd is connected to (for a
 * CancelRequest).  Returns the descriptor, or -1 with a message in err.
 */
int pgc_sock_connect_peer(int fd, int64_t deadline, char *err,
                          size_t errlen);

/*
 * Waits until fd is readable (for_write 0) or writable (1).  Returns 1
 * when ready, 0 at the deadline, -1 on error (errno set).
 */
int pgc_sock_wait(int fd, int for_write, int64_t deadline);

/* Non-blocking read and write: the byte count, 0 at end of stream (read
 * only), -1 with errno (EAGAIN when nothing can move now). */
ssize_t pgc_sock_read(int fd, void *p, size_t n);
ssize_t pgc_sock_write(int fd, const void *p, size_t n);

void pgc_sock_close(int fd);

/* Whether host is an IPv4 or IPv6 literal. */
int pgc_sock_is_ip_literal(const char *host);

#endif
