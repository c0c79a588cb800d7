// Package keystore reads and writes hpt keystores: bbolt files that hold an
// Ed25519 identity keypair and trusted public keys by unique name.
//
// There are three kinds of keystore:
//
//   - client: a CLI user's. Its own keypair and the public keys of the
//     targets it provisions directly (role "target"), never their private
//     keys; optionally a pinned cluster key (role "cluster").
//   - target: an agent's. Its own keypair and name, the public keys it
//     accepts provisioning from (role "client" for the direct-mode client,
//     role "cluster" for the cluster key) and, in cluster mode, the gossip
//     key and the seed node addresses.
//   - cluster: held by every server node. The cluster keypair (as the
//     identity), the memberlist gossip key, seed addresses, the bootstrap
//     admin token record and the SSH user and host CAs. It holds no named
//     keys.
//
// A key's Role says what the key may be used for; a verifier must check it
// (a target accepts a peer only if KeyByPublic finds it with RoleClient or
// RoleCluster), not merely that the key is somewhere in the keystore.
//
// # Safety
//
// Files are created with mode 0600 and refused with ErrInsecurePerms if
// group or others may access them. bbolt holds an exclusive lock on an open
// keystore; a second Open waits at most one second and then fails with
// ErrLocked. bbolt trusts its file, so before handing a file to bbolt Open
// checks its whole page structure with plain reads (meta pages, length,
// freelist, every reachable page), then decodes every record. A file that
// fails any check is reported with ErrNotKeystore naming the path and the
// bucket and record; panics and memory faults inside bbolt are recovered
// and reported the same way. Private keys never appear in an error.
//
// A Keystore is safe for concurrent use by multiple goroutines.
//
// # On-disk layout, format version 1
//
// All bucket and record names are ASCII. A record value is either a plain
// ASCII/UTF-8 string or JSON (an object, or for seeds an array); JSON is
// decoded strictly (unknown fields and trailing data are errors), so adding
// a field means raising the format version. Binary keys inside JSON are standard base64
// with padding (RFC 4648 section 4); times are RFC 3339 strings in UTC.
//
//	bucket "meta"
//	  "format"   "hpt-keystore"
//	  "version"  "1"                  decimal; a newer version is refused
//	  "kind"     "client" | "target" | "cluster"
//
//	bucket "identity"                 (absent until an identity is set)
//	  "key"      {"public": B64(32 bytes), "private": B64(32-byte seed), "created": TIME}
//	  "name"     the target's own name (target kind only)
//
//	bucket "keys"                     one record per named key; the bbolt key is the name
//	  NAME       {"role": "target"|"client"|"cluster", "public": B64(32 bytes),
//	              "private": B64(32-byte seed) (only if held), "created": TIME}
//
//	bucket "cluster"
//	  "gossip_key"       {"key": B64(32 bytes)}         target and cluster kinds
//	  "seeds"            ["host:port", ...]              target and cluster kinds
//	  "bootstrap_token"  {"id": STRING, "secret_sha256": HEX(32 bytes),
//	                      "subject": STRING}             cluster kind only
//	  "ssh_user_ca"      {"public": B64(32 bytes), "private": B64(32-byte seed),
//	                      "created": TIME}               cluster kind only
//	  "ssh_host_ca"      as ssh_user_ca                  cluster kind only
//
// The SSH CA records were added to format 1 without raising the version:
// both are optional (a keystore made before them has neither, and
// Keystore.EnsureSSHCAs adds them in place), and an hpt older than them
// refuses a keystore holding them as an unknown record, naming it, which
// is the right answer (it could not use them). Upgrade the binaries first.
//
// The private key is stored as its RFC 8032 32-byte seed next to the public
// key; a record whose public key does not derive from the seed is malformed.
// Key names are 1 to 253 characters of [A-Za-z0-9._@-] and do not start with
// a dot or a dash. Any other bucket or record is an error.
package keystore
