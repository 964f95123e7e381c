// Package chaos is raftkv's fault-injection suite in containers: five members of the
// image deploy/image.sh builds, each in a container of its own on networks the test
// creates, clients on the host doing get, put and compare-and-swap through clientv3,
// and a seeded nemesis that partitions members (docker network connect/disconnect),
// pauses them (docker pause), kills and restarts them (docker kill/start) and fills
// their disk. The verdicts: porcupine linearizability over the whole history
// (package kvmodel), no acknowledged write lost, every member converged, and the
// time from each fault's heal to the first write the cluster takes.
//
// The package holds only tests (and kvmodel, the model they check histories with);
// README.md says how to run them, short and long, and what a long run found.
package chaos
