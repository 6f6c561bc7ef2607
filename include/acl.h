/* Source-address allowlists: a list of CIDR blocks and a membership test. */
#ifndef VR_ACL_H
#define VR_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common.h"

struct acl;

/* Parses a comma- or space-separated list of CIDRs or addresses ("10.0.0.0/8, ::1").
 * On success *out is a new list (caller frees with acl_free); on failure returns VR_EINVAL and
 * writes a message naming the bad entry into err. */
int acl_parse(const char *list, struct acl **out, char *err, size_t errlen) VR_MUSTCHECK;

/* True when addr (AF_INET or AF_INET6; IPv4-mapped IPv6 counts as IPv4) is in a block. */
bool acl_allows(const struct acl *acl, const struct sockaddr *addr);

/* Number of blocks in the list. */
size_t acl_count(const struct acl *acl);

void acl_free(struct acl *acl);

#endif
