package main

import (
	"strings"
	"testing"
)

// clientInputCase is a command line a client command must refuse: its exit code, what
// stderr must say and what it must not (a Go library's wording, a wrong hint).
type clientInputCase struct {
	args    []string
	code    int
	want    []string
	notWant []string
}

func checkClientInput(t *testing.T, cases []clientInputCase) {
	t.Helper()
	for _, tc := range cases {
		stdout, stderr, code := runCLI(t, nil, tc.args...)
		if code != tc.code || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and no stdout", tc.args, code, stdout, stderr, tc.code)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, stderr, w)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(stderr, w) {
				t.Errorf("%q: stderr %q says %q", tc.args, stderr, w)
			}
		}
	}
}

// TestClientInputNumberFlags: the client commands' integer and duration flags say what
// they want, as the member's do, not strconv's or time's text.
func TestClientInputNumberFlags(t *testing.T) {
	goText := []string{"strconv", "invalid syntax", "time: "}
	checkClientInput(t, []clientInputCase{
		{[]string{"get", "foo", "--rev", "abc"}, exitBadArgs, []string{`"--rev" flag: "abc" is not a plain number of revisions`}, goText},
		{[]string{"get", "foo", "--limit", "ten"}, exitBadArgs, []string{`"ten" is not a plain number of keys`}, goText},
		{[]string{"watch", "foo", "--rev", "x1"}, exitBadArgs, []string{`"x1" is not a plain number of revisions`}, goText},
		{[]string{"get", "foo", "--max-recv-bytes", "8MB"}, exitBadArgs, []string{`"8MB" has a unit; give a plain number of bytes, e.g. 8388608`}, goText},
		{[]string{"get", "foo", "--dial-timeout", "5"}, exitBadArgs, []string{`"5" has no unit; give e.g. 5s, 5m or 5ms`}, append(goText, "0 for none")},
		{[]string{"status", "--command-timeout", "1.5"}, exitBadArgs, []string{`"1.5" has no unit; give e.g. 1.5s`}, goText},
		{[]string{"get", "foo", "--command-timeout", "soon"}, exitBadArgs, []string{"not a duration: give e.g. 10m, 30s or 500ms"}, goText},
		{[]string{"snapshot", "restore", "x.db", "--backend-separate-value-bytes", "lots"}, exitBadArgs, []string{`"lots" is not a plain number of bytes`}, goText},
	})
}

// TestClientInputLeaseGrantTTL: a negative TTL is a TTL, not a shorthand flag, and a
// TTL above etcd's maximum is refused with the maximum.
func TestClientInputLeaseGrantTTL(t *testing.T) {
	checkClientInput(t, []clientInputCase{
		{[]string{"lease", "grant", "-5"}, exitBadArgs, []string{"bad TTL -5: a lease's TTL is a positive number of seconds"}, []string{"shorthand"}},
		{[]string{"lease", "grant", "--", "-5"}, exitBadArgs, []string{"bad TTL -5: a lease's TTL is a positive number of seconds"}, nil},
		{[]string{"lease", "grant", "99999999999999"}, exitBadArgs, []string{"etcdserver: too large lease TTL; the most is 9000000000 seconds"}, nil},
		{[]string{"lease", "grant", "99999999999999999999"}, exitBadArgs, []string{"too large lease TTL; the most is 9000000000 seconds"}, nil},
		{[]string{"lease", "grant", "-x"}, exitBadArgs, []string{"unknown shorthand flag: 'x' in -x"}, []string{"TTL"}},
	})
}

// TestClientInputMemberPeerURLsRequired: etcdctl's words, the flag with its dashes, and
// whose URLs: a new member's for add, a member's new ones for update.
func TestClientInputMemberPeerURLsRequired(t *testing.T) {
	checkClientInput(t, []clientInputCase{
		{[]string{"member", "add", "m4"}, exitBadArgs, []string{"member peer urls not provided: give --peer-urls with the new member's peer URLs"}, nil},
		{[]string{"member", "update", "8e9e05c52164694d"}, exitBadArgs, []string{"member peer urls not provided: give --peer-urls with the member's new peer URLs"}, []string{"new member"}},
	})
}
