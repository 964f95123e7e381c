// Package watch serves etcd's watches from the store's history: a Hub follows the
// revision the store has applied and hands every watcher the events of its keys, in
// order, each once, grouped so that one revision's events for a watcher travel in
// one response.
//
// The Hub reads the store only through History (kv.Store implements it): after each
// applied entry the server calls Notify, and the hub's own goroutine reads the new
// revisions' events and queues them for the watchers whose keys they touch. The apply
// loop never waits for a watcher; it waits for the hub only before a compaction and
// a snapshot restore (Flush), which would otherwise drop events not yet handed out.
//
// A watcher is synced (it has everything up to the hub's position and takes each new
// revision as the hub reads it) or unsynced (behind: it catches up from the history
// in bounded reads, then joins the synced ones). A new watcher with an old
// start_revision starts unsynced; a synced one whose stream's queue is full becomes
// unsynced, and so a client that stops reading costs the member a bounded queue per
// stream, never the events it has not read (etcd's unsynced and victim watchers, in
// one mechanism). A watcher whose next revision was compacted is told so and ends,
// as in etcd.
//
// A Stream is one gRPC Watch stream: the server calls Create, Cancel and
// RequestProgress as requests arrive, and sends what Next returns. Its queue is one
// FIFO, so a watcher's Created response comes before its events and its Canceled
// response after them. Limits (Config): queued event responses and their bytes per
// stream, control responses per stream, watches per stream, events per history read.
package watch
