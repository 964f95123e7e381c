package transport

import "time"

// probe dials a probe connection to the peer every Config.ProbeInterval, so that
// Config.OnRoundTrip hears the round-trip time (dial reports it) even while the
// message stream, dialled once, lives on. etcd's rafthttp probes its peers for its
// peer_round_trip_time_seconds the same way. A failed probe is not reported as the
// peer being unreachable: the message stream says that.
func (p *peer) probe() {
	ticker := time.NewTicker(p.t.cfg.ProbeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-p.ctx.Done():
			return
		}
		conn, err := p.dial(p.ctx, p.addr(), streamProbe)
		if err != nil {
			p.logger.Debug("transport: probe failed", "err", err)
			continue
		}
		conn.Close()
	}
}
