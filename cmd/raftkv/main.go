// Command raftkv runs a member of a raftkv cluster, a local three-member cluster, or
// client commands against one.
//
//	raftkv [flags]                 serve one member (etcd-compatible flags)
//	raftkv cluster                 a local 3-member cluster, stopped by Ctrl-C
//	raftkv put|get|del|status ...  client commands
package main

import (
	"fmt"
	"os"
)

const usage = `raftkv: a replicated, linearizable key/value store that speaks the etcd v3 API.

Usage:
  raftkv [flags]                      serve one member (see "raftkv --help" for flags)
  raftkv cluster [--dir D] [--base-port P]
                                      start a local 3-member cluster; Ctrl-C stops it
  raftkv put KEY VALUE                write a key
  raftkv get KEY [--prefix]           read a key, or every key with the prefix
  raftkv del KEY [--prefix]           delete a key, or every key with the prefix
  raftkv status                       show each endpoint's member id, leader, term, index

Client commands take --endpoints (default 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379)
and --timeout (default 5s).
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "cluster":
			return runCluster(args[1:])
		case "put", "get", "del", "status":
			return runClient(args[0], args[1:])
		case "help":
			fmt.Print(usage)
			return 0
		case "serve":
			return runServe(args[1:])
		}
	}
	return runServe(args)
}
