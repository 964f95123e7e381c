// Command raftkv runs a member of a raftkv cluster, supervises a local cluster of
// members, or sends client commands to one.
//
//	raftkv [flags]                  serve one member: etcd's flags, RAFTKV_* or ETCD_*
//	                                environment variables, or etcd's --config-file
//	raftkv cluster [--members N]    a local cluster on etcd's ports; a member that dies
//	                                is restarted, and none outlives the supervisor
//	raftkv put|get|del|watch|lease|status|member|snapshot ...
//	                                client commands; their flags (--endpoints, -w)
//	                                go before or after the command
//
// The command line is built with cobra, as etcdctl's is. Every command is one
// constructor in its own file and one line in (*app).commands: a new client command
// is a func (a *app) newXCommand(c *clientFlags) *cobra.Command that calls
// c.register(cmd) for the client flags and c.each or c.first to reach the endpoints.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"raftkv/server"
	"raftkv/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// Exit codes, as etcdctl's: a command that failed, and a command line that cannot work;
// a member that stopped because it was removed from the cluster, which a supervisor
// must not restart (raftkv cluster does not); and a member that stopped, or could not
// start, because its disk is full (any error wrapping syscall.ENOSPC): its one line
// says what is full, how much was needed and is free, and to free space and restart
// it, which is safe (it catches up from the others) and, while the disk is still
// full, stops again with the same line.
const (
	exitError    = 1
	exitBadArgs  = 2
	exitRemoved  = 3
	exitDiskFull = 4
)

// usageError is a command line that cannot be right (an unknown flag, a missing
// argument): run prints it with a hint to the command's --help and exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// app is what every command writes to and reads its environment from, so that tests
// run the whole command line in process.
type app struct {
	stdout, stderr io.Writer
	environ        []string
	// helpErr is a request for help that named no command ("raftkv lease foo
	// --help"): the help func cannot return an error, so it leaves it here for run.
	helpErr error
}

// run executes the command line args and returns the process exit code. An error is
// printed once, here, as etcdctl prints it ("Error: ..."); a usage error adds one
// line that says where the help is, never the whole usage.
func run(args, environ []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, environ: environ}
	root := a.newRootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil && a.helpErr != nil {
		err = a.helpErr
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		helpPath := cmd.CommandPath()
		if uc := (*unknownCommandError)(nil); errors.As(err, &uc) {
			helpPath = uc.parent // "raftkv help foo" ran help, but raftkv's help lists the commands
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", helpPath)
		return exitBadArgs
	}
	if errors.Is(err, server.ErrRemoved) {
		return exitRemoved
	}
	if errors.Is(err, syscall.ENOSPC) {
		return exitDiskFull
	}
	return exitError
}

func (a *app) newRootCommand() *cobra.Command {
	serve := &serveFlags{}
	root := &cobra.Command{
		Use:   "raftkv",
		Short: "a replicated, linearizable key/value store that speaks the etcd v3 API",
		Long: "Start a member with etcd's flags. Every flag can also be set by an environment variable\n" +
			"(RAFTKV_NAME or etcd's ETCD_NAME for --name) or in an etcd YAML --config-file;\n" +
			"a flag wins over the environment, the environment over the file.\n\n" +
			"Under a cgroup memory limit (a container's, a systemd unit's MemoryMax) the member sizes\n" +
			"itself at start and logs it: below 512 MiB the store engine's cache and memtables left at\n" +
			"their defaults get a quarter of the limit, and unless GOMEMLIMIT is set the Go runtime's\n" +
			"soft memory limit is 90% of what the limit leaves beside the engine. The engine's memory\n" +
			"comes from one malloc arena (glibc's per-thread arenas nearly doubled it) unless\n" +
			"MALLOC_ARENA_MAX is set.",
		Args: rootArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.serve(cmd, serve)
		},
		SilenceErrors:     true,
		SilenceUsage:      true,
		Version:           version.Version,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SuggestionsMinimumDistance = 2
	cobra.EnableCommandSorting = false // the order of commands()
	root.SetVersionTemplate(strings.ReplaceAll(version.String(), "{{", "{{`{{`}}"))
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(rootFlagError)
	root.SetHelpFunc(a.help)
	root.SetHelpCommand(a.newHelpCommand())
	serve.register(root.Flags())
	root.Flags().BoolP("version", "", false, "Print the version and exit.")
	setGroup(root.Flags(), groupOther, "version")
	root.AddCommand(a.commands(&clientFlags{auth: clientAuthFlags{askPassword: askPasswordOn(a.stderr)}})...)
	registerClientBoolFlags(root)
	return root
}

// newHelpCommand is cobra's "help [command]", refusing a command that does not
// exist as running it would, where cobra's prints the root's help and exits 0.
func (a *app) newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "show a command's help",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err == nil && len(rest) > 0 && target.HasSubCommands() {
				err = unknownCommand(target, rest[0])
			}
			if err != nil {
				return err
			}
			return target.Help()
		},
	}
}

// rootFlagError makes a flag error a usage error; for a client command's flag given
// with no command ("raftkv --endpoints x"), it says which commands take it.
func rootFlagError(cmd *cobra.Command, err error) error {
	if cmd.HasParent() {
		return &usageError{err}
	}
	msg := err.Error()
	var flag string
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		flag = "--" + name
	} else if _, in, ok := strings.Cut(msg, "' in -"); ok && strings.HasPrefix(msg, "unknown shorthand flag: '") {
		flag = "-" + in[:1]
	}
	if flag == "" {
		return &usageError{err}
	}
	return usageErrorf("%v%s", err, flagOfCommandsHint(cmd, flag))
}

// flagOfCommandsHint says which commands take flag ("--endpoints", "-w"), a flag the
// member refused: "; --endpoints is a flag of the commands (put, get, ...), not of
// the member ...". It is empty for a flag no command takes.
func flagOfCommandsHint(root *cobra.Command, flag string) string {
	cmds := clientCommands(root, strings.TrimLeft(flag, "-"))
	if len(cmds) == 0 {
		return ""
	}
	return fmt.Sprintf("; %s is a flag of the commands (%s), not of the member raftkv starts without one: "+
		"give it with a command, e.g. raftkv %s ... %s ...",
		flag, strings.Join(cmds, ", "), cmds[0], flag)
}

// clientCommands are the commands under root that take the flag name (long, or one
// letter for a shorthand), by their path below root: "get", "lease grant". A command
// whose subcommands all take it is named alone: "lease", not each of its own.
func clientCommands(root *cobra.Command, name string) []string {
	var names []string
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		if !c.HasSubCommands() {
			if takesFlag(c, name) {
				names = append(names, c.Name())
			}
			continue
		}
		sub := clientCommands(c, name)
		if len(sub) == len(availableCommands(c)) {
			names = append(names, c.Name())
			continue
		}
		for _, s := range sub {
			names = append(names, c.Name()+" "+s)
		}
	}
	return names
}

func takesFlag(c *cobra.Command, name string) bool {
	if len(name) == 1 {
		return c.Flags().ShorthandLookup(name) != nil
	}
	return c.Flags().Lookup(name) != nil
}

// availableCommands are the names of cmd's subcommands that the help lists.
func availableCommands(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// subcommandArgs refuses a word after a command that has subcommands when it is none
// of them, as cobra refuses one after the root; with no word, the command's RunE
// prints its help.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return nil
}

// unknownCommand is cobra's error for an unknown command word, with the commands
// there are and the nearest one.
func unknownCommand(cmd *cobra.Command, word string) error {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = cmd.Root().SuggestionsMinimumDistance
	}
	hint := ""
	if s := cmd.SuggestionsFor(word); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return &usageError{&unknownCommandError{fmt.Sprintf("unknown command %q for %q%s (commands: %s)",
		word, cmd.CommandPath(), hint, strings.Join(availableCommands(cmd), ", ")), cmd.CommandPath()}}
}

// unknownCommandError is a word that is none of parent's subcommands.
type unknownCommandError struct{ msg, parent string }

func (e *unknownCommandError) Error() string { return e.msg }

// commands are raftkv's subcommands; the help lists them in this order. The client
// commands share one clientFlags (only one command runs).
func (a *app) commands(c *clientFlags) []*cobra.Command {
	return []*cobra.Command{
		a.newClusterCommand(),
		a.newPutCommand(c),
		a.newGetCommand(c),
		a.newDelCommand(c),
		a.newWatchCommand(c),
		a.newLeaseCommand(c),
		a.newStatusCommand(c),
		a.newMemberCommand(c),
		a.newSnapshotCommand(c),
	}
}

// rootArgs refuses words after "raftkv" that are not a command: the member takes
// flags only, so a word there is a mistyped command or a flag without its dashes.
func rootArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageErrorf("unknown command %q%s (commands: %s; flags start with --)", args[0], hint, strings.Join(availableCommands(cmd), ", "))
}

// exactArgs is cobra.ExactArgs as a usage error that names the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s takes %d argument(s) (%s), got %d: %q",
				cmd.CommandPath(), len(names), strings.Join(names, " "), len(args), args)
		}
		return nil
	}
}
