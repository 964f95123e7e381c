package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flag groups of the help text, in etcd's order for the member's flags.
const (
	groupMember     = "Member"
	groupClustering = "Clustering"
	groupOperations = "Compaction and recovery"
	groupWatchLease = "Watch and lease"
	groupMonitoring = "Profiling and monitoring"
	groupLogging    = "Logging"
	groupOther      = "Configuration"
	groupClient     = "Client flags (every client command takes them, before or after the command)"
	groupCommand    = "Flags"
	groupAnnotation = "raftkv-help-group"
)

// setGroup files the named flags under a heading of the help text.
func setGroup(fs *pflag.FlagSet, group string, names ...string) {
	for _, name := range names {
		if err := fs.SetAnnotation(name, groupAnnotation, []string{group}); err != nil {
			panic(fmt.Sprintf("help group %q: %v", group, err))
		}
	}
}

// help prints a command's help in etcd's layout: each flag as --name 'default' on its
// own line, its meaning indented below, grouped under headings.
func (a *app) help(cmd *cobra.Command, _ []string) {
	// "raftkv lease foo --help" reaches here with the help flag before any check of
	// the word: refuse it as "raftkv lease foo" would be.
	if args := cmd.Flags().Args(); len(args) > 0 && cmd.HasAvailableSubCommands() {
		a.helpErr = unknownCommand(cmd, args[0])
		return
	}
	w := cmd.OutOrStdout()
	if cmd.HasParent() {
		fmt.Fprintf(w, "%s: %s\n\nUsage:\n  %s\n", cmd.CommandPath(), cmd.Short, cmd.UseLine())
		if cmd.Long != "" {
			fmt.Fprintf(w, "\n%s\n", cmd.Long)
		}
		if cmd.Example != "" {
			fmt.Fprintf(w, "\nExamples:\n%s\n", cmd.Example)
		}
		if cmd.HasAvailableSubCommands() {
			fmt.Fprintf(w, "\nCommands:\n")
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					fmt.Fprintf(w, "  %s\n    %s.\n", c.UseLine(), upperFirst(c.Short))
				}
			}
		}
	} else {
		fmt.Fprintf(w, "raftkv: %s.\n\nUsage:\n\n  raftkv [flags]\n    Start a member.\n", cmd.Short)
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				fmt.Fprintf(w, "\n  %s\n    %s\n", c.UseLine(), upperFirst(c.Short)+".")
			}
		}
		fmt.Fprintf(w, "\n  raftkv --version\n    Show the version of raftkv.\n")
		fmt.Fprintf(w, "\n  raftkv -h | --help\n  raftkv COMMAND --help\n    Show this help, or a command's.\n")
		fmt.Fprintf(w, "\n%s\n", cmd.Long)
	}
	printFlagGroups(w, cmd.Flags())
	if !cmd.HasParent() {
		fmt.Fprintf(w, "\netcd's other flags (discovery, tracing, ...) are accepted, as flags, ETCD_* variables or\n"+
			"config file keys, and either ignored with a warning or refused with the reason: see the\n"+
			"table of etcd's flags in README.md.\n")
	}
}

// printFlagGroups prints the visible flags of fs under their group headings, the
// groups in the order their first flag was defined.
func printFlagGroups(w io.Writer, fs *pflag.FlagSet) {
	var order []string
	byGroup := map[string][]*pflag.Flag{}
	fs.SortFlags = false
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		group := groupCommand
		if g := f.Annotations[groupAnnotation]; len(g) > 0 {
			group = g[0]
		}
		if _, seen := byGroup[group]; !seen {
			order = append(order, group)
		}
		byGroup[group] = append(byGroup[group], f)
	})
	// The command's own flags first, then the ones it shares with other commands.
	if i := slices.Index(order, groupCommand); i > 0 {
		order = append(append([]string{groupCommand}, order[:i]...), order[i+1:]...)
	}
	for _, group := range order {
		fmt.Fprintf(w, "\n%s:\n", group)
		for _, f := range byGroup[group] {
			name := "--" + f.Name
			if f.Shorthand != "" {
				name = "-" + f.Shorthand + ", " + name
			}
			def := f.DefValue
			if def == "[]" {
				def = "" // an empty list, shown as etcd shows it
			}
			if d := f.Annotations[defaultAnnotation]; len(d) > 0 {
				def = d[0]
			}
			if f.Value.Type() == "bool" && def == "false" {
				fmt.Fprintf(w, "  %s\n", name)
			} else {
				fmt.Fprintf(w, "  %s '%s'\n", name, def)
			}
			fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(f.Usage, "\n", "\n    "))
		}
	}
}

// defaultAnnotation overrides the default the help shows, for a flag whose real
// default is derived from others (--data-dir's ${name}.raftkv).
const defaultAnnotation = "raftkv-help-default"

func setHelpDefault(fs *pflag.FlagSet, name, shown string) {
	if err := fs.SetAnnotation(name, defaultAnnotation, []string{shown}); err != nil {
		panic(fmt.Sprintf("help default of --%s: %v", name, err))
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
