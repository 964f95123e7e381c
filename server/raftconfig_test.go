package server

import (
	"testing"
	"time"

	"raftkv/raft"
)

// TestRaftConfigFromServerConfig: the member's Raft node gets AppendToAll and
// ReadIndexToAll from Config (off by default), its tick from the heartbeat interval,
// its election ticks from the election timeout, and appends large enough for the
// largest request.
func TestRaftConfigFromServerConfig(t *testing.T) {
	build := func(c Config) raft.Config {
		s := &Server{cfg: c.withDefaults(), id: 7}
		return s.raftConfig([]uint64{7, 8, 9})
	}
	rc := build(Config{})
	if rc.AppendToAll || rc.ReadIndexToAll {
		t.Errorf("defaults: AppendToAll %v, ReadIndexToAll %v; want both off", rc.AppendToAll, rc.ReadIndexToAll)
	}
	if rc.ID != 7 || len(rc.Peers) != 3 || rc.TickInterval != DefaultHeartbeatInterval ||
		rc.ElectionTicks != int(DefaultElectionTimeout/DefaultHeartbeatInterval) || rc.HeartbeatTicks != 1 {
		t.Errorf("defaults: id %d, peers %v, tick %v, election ticks %d, heartbeat ticks %d",
			rc.ID, rc.Peers, rc.TickInterval, rc.ElectionTicks, rc.HeartbeatTicks)
	}
	if rc.MaxSizePerMsg < uint64(DefaultMaxRequestBytes) {
		t.Errorf("MaxSizePerMsg %d is below the largest request, %d bytes", rc.MaxSizePerMsg, DefaultMaxRequestBytes)
	}

	rc = build(Config{AppendToAll: true, ReadIndexToAll: true, HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: time.Second})
	if !rc.AppendToAll || !rc.ReadIndexToAll {
		t.Errorf("set: AppendToAll %v, ReadIndexToAll %v; want both on", rc.AppendToAll, rc.ReadIndexToAll)
	}
	if rc.TickInterval != 50*time.Millisecond || rc.ElectionTicks != 20 {
		t.Errorf("50ms heartbeat, 1s election timeout: tick %v, election ticks %d; want 50ms and 20", rc.TickInterval, rc.ElectionTicks)
	}
}
