package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestClientInputUnknownSubcommand: a word that is no command is an error with exit 2
// wherever it stands, with --help after it, and after help.
func TestClientInputUnknownSubcommand(t *testing.T) {
	checkClientInput(t, []clientInputCase{
		{[]string{"snapshot", "foo"}, exitBadArgs, []string{`unknown command "foo" for "raftkv snapshot" (commands: save, restore, status, to-etcd)`, "Run 'raftkv snapshot --help'"}, nil},
		{[]string{"lease", "ttl", "--help"}, exitBadArgs, []string{`unknown command "ttl" for "raftkv lease"`}, nil},
		{[]string{"member", "lst", "-h"}, exitBadArgs, []string{`unknown command "lst" for "raftkv member"; did you mean "list"?`}, nil},
		{[]string{"foo", "--help"}, exitBadArgs, []string{`unknown command "foo" for "raftkv"`}, nil},
		{[]string{"help", "foo"}, exitBadArgs, []string{`unknown command "foo" for "raftkv" (commands: cluster, put,`, "Run 'raftkv --help'"}, nil},
		{[]string{"help", "lease", "foo"}, exitBadArgs, []string{`unknown command "foo" for "raftkv lease"`, "Run 'raftkv lease --help'"}, nil},
	})
	for _, args := range [][]string{{"help", "lease"}, {"snapshot"}, {"snapshot", "--help"}, {"help", "snapshot", "to-etcd"}} {
		if stdout, stderr, code := runCLI(t, nil, args...); code != 0 || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%q: exit %d, stderr %q; want its help and exit 0", args, code, stderr)
		}
	}
}

// TestClientInputClientFlagWithoutCommand: a command's flag given to the member names
// every command that takes it, as the command tree has them.
func TestClientInputClientFlagWithoutCommand(t *testing.T) {
	root := (&app{}).newRootCommand()
	var takers []string
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Flags().Lookup("endpoints") != nil {
				takers = append(takers, sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
	for _, args := range [][]string{{"--endpoints", "127.0.0.1:2379"}, {"-w", "json"}, {"--insecure-skip-tls-verify"}, {"--cacert", "ca.pem"}} {
		stdout, stderr, code := runCLI(t, nil, args...)
		if code != exitBadArgs || stdout != "" || !strings.Contains(stderr, "is a flag of the commands (put, get, del, watch, lease, status, member, snapshot save") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and the commands that take it", args, code, stderr)
			continue
		}
		for _, path := range takers {
			name := strings.TrimPrefix(path, "raftkv ")
			if parent, _, _ := strings.Cut(name, " "); !strings.Contains(stderr, name) && !strings.Contains(stderr, " "+parent+",") {
				t.Errorf("%q: stderr %q does not name %s, which takes the flag", args, stderr, path)
			}
		}
	}
}

// TestClientInputRootHelpListsSubcommands: the root help shows snapshot as it shows
// lease and member, and names to-etcd.
func TestClientInputRootHelpListsSubcommands(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "--help")
	for _, want := range []string{"raftkv lease <subcommand>", "raftkv member <subcommand>", "raftkv snapshot <subcommand>", "to-etcd"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("raftkv --help (exit %d) lacks %q:\n%s", code, want, stdout)
		}
	}
}
