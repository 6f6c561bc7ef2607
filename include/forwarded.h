/* The client behind a trusted proxy: X-Forwarded-For and the PROXY protocol header (v1 text,
 * v2 binary). Pure parsing over bounded input, no I/O and no allocation. */
#ifndef VR_FORWARDED_H
#define VR_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "acl.h"
#include "common.h"
#include "httpreq.h"

/* Trusted proxies an X-Forwarded-For walk may pass, all its lines together; more is a malformed
 * header. */
#define FORWARDED_MAX_HOPS 32
/* Longest element of the list: a bracketed IPv6 address with an IPv4 tail. */
#define FORWARDED_MAX_ELEMENT_BYTES 48
/* The longest v1 header, CRLF included (the protocol's own limit). */
#define FORWARDED_PROXY_V1_MAX_BYTES 107
/* Bytes forwarded_proxy_parse may need to decide: a whole v1 line, which is longer than the v2
 * fixed part and an IPv6 address block (16 + 36). Whatever a v2 header carries beyond (TLVs)
 * is skipped, never read. */
#define FORWARDED_PROXY_MAX_BYTES FORWARDED_PROXY_V1_MAX_BYTES

/* The address of the client of a request that arrived from peer (the TCP peer, or the source
 * a PROXY header gave). When peer is in trusted, the X-Forwarded-For lines among the count
 * headers, taken as one list in order, are walked from the right: the client is the
 * right-most address that is not itself in trusted, or the left-most when all are. Otherwise
 * (trusted NULL or empty, peer outside it, or no address in the header) the client is peer,
 * and the header is not even looked at. The walk reads nothing left of the client, so what a
 * sender wrote there (behind a proxy that appends, as nginx does) is never parsed. IPv4-mapped
 * IPv6 comes out as IPv4. Returns 0 with *client set, or VR_EPARSE when an element the walk
 * reads is malformed (not an IP address, or over FORWARDED_MAX_ELEMENT_BYTES) or it passes more
 * than FORWARDED_MAX_HOPS trusted proxies, with a message naming the header in err; *client is
 * then peer. */
int forwarded_client(const struct sockaddr *peer, const struct acl *trusted,
                     const struct httpreq_header *headers, size_t count,
                     struct sockaddr_storage *client, char *err, size_t errlen) VR_MUSTCHECK;

enum forwarded_proxy_result {
    FORWARDED_PROXY_DONE,      /* a whole header's worth decided: see struct forwarded_proxy */
    FORWARDED_PROXY_NEED_MORE, /* a valid beginning: call again with more bytes */
    FORWARDED_PROXY_BAD,       /* not a PROXY header, or a malformed one: err says why */
};

struct forwarded_proxy {
    /* The header's whole length. For v2 it may exceed the bytes given (TLVs follow the
     * addresses): the caller skips the rest before the stream goes on. */
    size_t header_bytes;
    /* LOCAL (v2), UNKNOWN (v1), or a family without an IP address (v2 AF_UNSPEC, AF_UNIX): the
     * connection is the proxy's own, and its peer address stands. */
    bool keep_peer;
    struct sockaddr_storage source; /* the client (with its port) when !keep_peer */
    int version;                    /* 1 or 2 */
};

/* Decides on the PROXY header at the start of data (len bytes, borrowed). Never needs more
 * than FORWARDED_PROXY_MAX_BYTES to answer DONE or BAD, and answers BAD as soon as the bytes
 * cannot begin a header (an HTTP request line, say). *out is set with DONE; err gets a message
 * with BAD. */
enum forwarded_proxy_result forwarded_proxy_parse(const unsigned char *data, size_t len,
                                                  struct forwarded_proxy *out, char *err,
                                                  size_t errlen);

/* The textual address of sa (AF_INET or AF_INET6; "unknown" otherwise) into out. */
void forwarded_addr_name(const struct sockaddr *sa, char *out, size_t cap);

/* Turns an IPv4-mapped IPv6 address in ss into the IPv4 address it is (port kept). */
void forwarded_addr_unmap(struct sockaddr_storage *ss);

#endif
