package kv

// sessionTable gives clients exactly-once writes. A client tags each command
// with its id and a sequence number that grows by one per new request and stays
// the same on a retry. The table keeps, per client, the last sequence number
// applied and its Result, so a retried command (one the log may hold twice,
// when a client retried after a leader change) returns the first Result
// instead of applying again.
//
// The table holds at most max clients. A new client beyond that evicts the
// client used least recently, where "used" means a command of that client was
// applied or answered from the table; use is counted in log order, so every
// replica evicts the same client. An evicted client's next command is treated
// as new: if it was a retry of a command already applied, it applies twice.
// That is the price of a bounded table; MaxSessions should exceed the number of
// clients that can have a request in flight at once by a wide margin.
type sessionTable struct {
	max      int
	byClient map[uint64]*session
	// The sessions form a list ordered by last use: head is the most recent,
	// tail the next to evict. Snapshots write them tail first to keep the order.
	head, tail *session
}

// session is one client's entry.
type session struct {
	clientID uint64
	seq      uint64
	// result is returned as is for a retry of seq. Its responses are shared with
	// the caller who got them first, so nobody may modify them.
	result     Result
	prev, next *session // prev is more recent, next less recent
}

func newSessionTable(max int) sessionTable {
	return sessionTable{max: max, byClient: make(map[uint64]*session)}
}

func (t *sessionTable) len() int { return len(t.byClient) }

func (t *sessionTable) get(clientID uint64) *session { return t.byClient[clientID] }

// touch moves s to the front of the list.
func (t *sessionTable) touch(s *session) {
	if t.head == s {
		return
	}
	t.unlink(s)
	t.pushFront(s)
}

// record stores the result of the command (clientID, seq), adding the client
// if it is new and evicting the least recently used client if the table is full.
// It returns the evicted client's id, 0 if none (client ids are not 0).
func (t *sessionTable) record(clientID, seq uint64, result Result) (evicted uint64) {
	if s := t.byClient[clientID]; s != nil {
		s.seq, s.result = seq, result
		t.touch(s)
		return 0
	}
	if len(t.byClient) >= t.max {
		oldest := t.tail
		t.unlink(oldest)
		delete(t.byClient, oldest.clientID)
		evicted = oldest.clientID
	}
	s := &session{clientID: clientID, seq: seq, result: result}
	t.byClient[clientID] = s
	t.pushFront(s)
	return evicted
}

func (t *sessionTable) pushFront(s *session) {
	s.prev, s.next = nil, t.head
	if t.head != nil {
		t.head.prev = s
	}
	t.head = s
	if t.tail == nil {
		t.tail = s
	}
}

func (t *sessionTable) unlink(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		t.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		t.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// oldestFirst calls fn for each session from least to most recently used.
func (t *sessionTable) oldestFirst(fn func(*session)) {
	for s := t.tail; s != nil; s = s.prev {
		fn(s)
	}
}
