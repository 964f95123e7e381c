// Package chaos is raftkv's fault-injection suite in containers: five members of the
// image deploy/image.sh builds, each in a container of its own on networks the test
// creates, clients on the host doing get, put and compare-and-swap through clientv3,
// watchers on every member, and a seeded nemesis that partitions members (docker
// network connect/disconnect), pauses them (docker pause), kills and restarts them
// (docker kill/start) and fills their disk. The verdicts: porcupine linearizability
// over the whole history (package kvmodel), no acknowledged write lost, every member
// converged, the time from each fault's heal to the first write the cluster takes,
// and every write that took effect delivered to every watcher once, in revision
// order, with no gap (package watchcheck).
//
// The package holds only tests (and kvmodel and watchcheck, which check histories);
// README.md says how to run them, short and long, and what a long run found.
package chaos
