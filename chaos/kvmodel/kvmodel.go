// Package kvmodel is the porcupine model of a key/value store read and written through
// the etcd v3 API: each key a register with get, put and compare-and-swap (a Txn that
// puts if the value equals the one expected). Histories of it are checked for
// linearizability with porcupine.CheckOperations(kvmodel.Model, history).
//
// The model needs no raftkv code, so any suite that records a history of etcd calls
// can import it (the chaos suite does; the e2e module could, instead of its own copy).
package kvmodel

import (
	"fmt"
	"math"

	"github.com/anishathalye/porcupine"
)

// Kind is the kind of a call.
type Kind int

const (
	// Get reads the key (a linearizable Range).
	Get Kind = iota
	// Put writes Value to the key.
	Put
	// CAS writes Value to the key if its value is Expect (a Txn comparing the value).
	CAS
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case CAS:
		return "cas"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Input is one call. A history must give every Put and CAS a Value no other call
// writes, and never the empty string, which stands for a key that does not exist:
// uniqueness is what lets a read name the write it saw.
type Input struct {
	Kind   Kind
	Key    string
	Value  string
	Expect string
}

// Output is what the call returned. Unknown marks a Put or CAS that failed or timed
// out: it may have taken effect at any time after its call, or never, so the history
// records it with Return = NeverReturned. A Get that failed changed nothing and is
// left out of the history.
type Output struct {
	Value     string // Get: the value read, "" if the key does not exist
	Succeeded bool   // CAS: whether the compare held
	Unknown   bool
}

// NeverReturned is the return time of a call whose outcome is unknown.
const NeverReturned = math.MaxInt64

// Model is the porcupine model: a register per key, partitioned by key (a history is
// linearizable iff each key's history is, which keeps the search small).
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step:      step,
	DescribeOperation: func(input, output any) string {
		return Describe(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		key := op.Input.(Input).Key
		if _, seen := byKey[key]; !seen {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], op)
	}
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, key := range keys {
		out = append(out, byKey[key])
	}
	return out
}

// step applies one call to the register's value and says whether its output is
// possible from that value.
func step(state, input, output any) (bool, any) {
	current, in, out := state.(string), input.(Input), output.(Output)
	switch in.Kind {
	case Get:
		return out.Value == current, current
	case Put:
		return true, in.Value
	case CAS:
		holds := current == in.Expect
		switch {
		case out.Unknown && holds:
			// An unknown CAS linearized here would have found its value and written.
			return true, in.Value
		case out.Unknown:
			return true, current
		case out.Succeeded:
			return holds, in.Value
		default:
			return !holds, current
		}
	}
	panic(fmt.Sprintf("kvmodel: call of unknown kind %d on key %q", in.Kind, in.Key))
}

// Describe is the one-line text of a call and its result, for porcupine's
// visualization and for failure messages.
func Describe(in Input, out Output) string {
	result := ""
	switch {
	case out.Unknown:
		result = " → ?"
	case in.Kind == Get:
		result = fmt.Sprintf(" → %q", out.Value)
	case in.Kind == CAS:
		result = fmt.Sprintf(" → %v", out.Succeeded)
	}
	switch in.Kind {
	case Get:
		return fmt.Sprintf("get(%s)%s", in.Key, result)
	case Put:
		return fmt.Sprintf("put(%s, %s)%s", in.Key, in.Value, result)
	default:
		return fmt.Sprintf("cas(%s, %s → %s)%s", in.Key, in.Expect, in.Value, result)
	}
}
