package auth

import "strings"

// shellQuote quotes s for a POSIX shell when it needs it, so that a hint
// like "hpt grants add user:bob admin '*'" can be pasted as it is: unquoted,
// the shell would expand * to the files in the current directory. Words of
// only safe characters stay bare, which keeps the common hint readable.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellQuote is shellQuote for the handlers that write their own denial
// hints (credential issuers).
func ShellQuote(s string) string { return shellQuote(s) }
