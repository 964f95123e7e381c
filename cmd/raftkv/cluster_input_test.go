package main

import (
	"strings"
	"testing"
)

// A --members or --base-port that is no number says the flag, the value and the
// numbers it takes, not strconv's words.
func TestClusterNumberFlagsSayTheirRange(t *testing.T) {
	for flag, tc := range map[string]struct{ value, want string }{
		"--members":   {"abc", `Error: invalid argument "abc" for "--members" flag: "abc" is not a whole number; give a number of members from 1 to 7`},
		"--base-port": {"x1", `Error: invalid argument "x1" for "--base-port" flag: "x1" is not a whole number; give a port from 1 to 65535, or 0 for free ports`},
	} {
		stdout, stderr, code := runCLI(t, nil, "cluster", flag, tc.value)
		if code != exitBadArgs || !strings.HasPrefix(stderr, tc.want+"\n") || stdout != "" {
			t.Errorf("%s %s: exit %d, stdout %q, stderr\n%s\nwant exit %d and\n%s", flag, tc.value, code, stdout, stderr, exitBadArgs, tc.want)
		}
	}
}
