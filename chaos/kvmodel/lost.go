package kvmodel

import (
	"fmt"
	"maps"
	"slices"

	"github.com/anishathalye/porcupine"
)

// A LostWrite is an acknowledged write that a final read of its key does not reflect.
type LostWrite struct {
	Key string
	// Write is the acknowledged Put or successful CAS that was lost.
	Write porcupine.Operation
	// Final is the value the final read returned ("" if the key is missing), and
	// FinalWrite the call that wrote it (nil if "" or if no call of the history did).
	Final      string
	FinalWrite *porcupine.Operation
}

func (l LostWrite) String() string {
	if l.Final != "" && l.FinalWrite == nil {
		return fmt.Sprintf("key %s: final value %q was written by no call of the history", l.Key, l.Final)
	}
	write := Describe(l.Write.Input.(Input), l.Write.Output.(Output))
	if l.Final == "" {
		return fmt.Sprintf("key %s: %s acknowledged at %d, but the key is missing at the end", l.Key, write, l.Write.Return)
	}
	return fmt.Sprintf("key %s: %s acknowledged at %d is lost: the final value %q was written by %s, which returned at %d, before it was called at %d",
		l.Key, write, l.Write.Return, l.Final,
		Describe(l.FinalWrite.Input.(Input), l.FinalWrite.Output.(Output)), l.FinalWrite.Return, l.Write.Call)
}

// LostWrites checks that no acknowledged write of history is lost, given final, the
// value of every key after all calls returned (a key of the history missing from
// final reads as ""). The history holds no deletes, so:
//
//   - a key that took an acknowledged write must exist at the end;
//   - its final value must have been written by a call of the history;
//   - and that call F must not have returned before some acknowledged write X of the
//     key was called: X would then be ordered after F in every linearization, and
//     since every value is written once, nothing after X could have written F's
//     value again.
//
// The porcupine check over the history and the final reads implies all of this; this
// check says which write was lost in words a reader can act on.
func LostWrites(history []porcupine.Operation, final map[string]string) []LostWrite {
	writesByKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		in := op.Input.(Input)
		if in.Kind != Get {
			writesByKey[in.Key] = append(writesByKey[in.Key], op)
		}
	}
	var lost []LostWrite
	for _, key := range slices.Sorted(maps.Keys(writesByKey)) {
		writes := writesByKey[key]
		value := final[key]
		var finalWrite *porcupine.Operation
		for i := range writes {
			if writes[i].Input.(Input).Value == value && value != "" {
				finalWrite = &writes[i]
			}
		}
		if value != "" && finalWrite == nil {
			lost = append(lost, LostWrite{Key: key, Final: value})
			continue
		}
		for _, w := range writes {
			if !acknowledged(w) {
				continue
			}
			if value == "" || w.Call > finalWrite.Return {
				lost = append(lost, LostWrite{Key: key, Write: w, Final: value, FinalWrite: finalWrite})
			}
		}
	}
	return lost
}

// acknowledged says whether a write call is known to have taken effect.
func acknowledged(op porcupine.Operation) bool {
	in, out := op.Input.(Input), op.Output.(Output)
	if out.Unknown {
		return false
	}
	return in.Kind == Put || (in.Kind == CAS && out.Succeeded)
}
