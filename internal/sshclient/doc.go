// Package sshclient is the client half of `hpt ssh`, as tsh is Teleport's:
// it connects to an OpenSSH server as a login with a user certificate,
// verifies the server by the cluster's host CA (never trust on first use),
// and runs a command or an interactive shell, passing the remote exit
// status through.
//
// The host must present a host certificate signed by the host CA, valid
// now, naming the host the client asked for (by default the host part of
// the address dialled). A plain host key, a certificate of another CA, an
// expired one or one for another name is refused with an error wrapping
// ErrUntrustedHost that says which; Options.InsecureHostKey skips the
// check altogether.
//
// A pty is requested for Shell when its stdin is a terminal (which is then
// put in raw mode, restored on return, and whose size changes are passed
// on), and for Run and Shell when Options.ForcePTY is set, as ssh -t does.
package sshclient
