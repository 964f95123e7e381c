package kvmodel

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

func op(client int, in Input, call int64, out Output, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func put(v string) Input         { return Input{Kind: Put, Key: "k", Value: v} }
func cas(expect, v string) Input { return Input{Kind: CAS, Key: "k", Expect: expect, Value: v} }
func read(key string) Input      { return Input{Kind: Get, Key: key} }
func got(value string) Output    { return Output{Value: value} }
func casResult(ok bool) Output   { return Output{Succeeded: ok} }
func unknownPut(v string, call int64) porcupine.Operation {
	return op(0, put(v), call, Output{Unknown: true}, NeverReturned)
}

// TestModel checks the model on small histories, legal and not, so that a passing
// chaos run means its history was checked, not that the model accepts anything.
func TestModel(t *testing.T) {
	unknown := Output{Unknown: true}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"read your write", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, read("k"), 20, got("a"), 30)}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, read("k"), 20, got(""), 30)}, porcupine.Illegal},
		{"concurrent read may miss", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 30), op(1, read("k"), 10, got(""), 20)}, porcupine.Ok},
		{"read of a value never written", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, read("k"), 20, got("b"), 30)}, porcupine.Illegal},
		{"unknown put may land late", []porcupine.Operation{
			unknownPut("a", 0), op(1, read("k"), 20, got(""), 30), op(1, read("k"), 40, got("a"), 50)}, porcupine.Ok},
		{"unknown put cannot be undone", []porcupine.Operation{
			unknownPut("a", 0), op(1, read("k"), 20, got("a"), 30), op(1, read("k"), 40, got(""), 50)}, porcupine.Illegal},
		{"cas succeeds on its value", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("a", "b"), 20, casResult(true), 30),
			op(1, read("k"), 40, got("b"), 50)}, porcupine.Ok},
		{"cas cannot fail on its value", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("a", "b"), 20, casResult(false), 30)}, porcupine.Illegal},
		{"cas cannot succeed on another value", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("x", "b"), 20, casResult(true), 30)}, porcupine.Illegal},
		{"unknown cas may apply", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("a", "b"), 20, unknown, NeverReturned),
			op(2, read("k"), 30, got("a"), 40), op(2, read("k"), 50, got("b"), 60)}, porcupine.Ok},
		{"unknown cas applies once", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("a", "b"), 20, unknown, NeverReturned),
			op(2, read("k"), 30, got("b"), 40), op(2, read("k"), 50, got("a"), 60)}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, read("other"), 20, got(""), 30)}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperationsTimeout(Model, tc.history, 0); got != tc.want {
			t.Errorf("%s: porcupine says %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestLostWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		final   string
		want    string // "" for no lost write, else a part of the first one's text
	}{
		{"last acknowledged write survives", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(0, put("b"), 20, Output{}, 30)}, "b", ""},
		{"overwritten by a concurrent write", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 30), op(1, put("b"), 10, Output{}, 20)}, "a", ""},
		{"concurrent writes, either may win", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 30), op(1, put("b"), 10, Output{}, 20)}, "b", ""},
		{"an unknown write may win late", []porcupine.Operation{
			unknownPut("a", 0), op(1, put("b"), 10, Output{}, 20)}, "a", ""},
		{"an unknown write may never apply", []porcupine.Operation{
			op(1, put("b"), 0, Output{}, 10), unknownPut("a", 20)}, "b", ""},
		{"a failed cas writes nothing", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("x", "b"), 20, casResult(false), 30)}, "a", ""},
		{"acknowledged write rolled back", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(0, put("b"), 20, Output{}, 30)}, "a", "put(k, b) acknowledged at 30 is lost"},
		{"acknowledged cas rolled back", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10), op(1, cas("a", "b"), 20, casResult(true), 30)}, "a", "cas(k, a → b)"},
		{"key missing", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10)}, "", "the key is missing"},
		{"value from nowhere", []porcupine.Operation{
			op(0, put("a"), 0, Output{}, 10)}, "z", "written by no call"},
		{"only unknown writes, key missing", []porcupine.Operation{
			unknownPut("a", 0)}, "", ""},
	} {
		lost := LostWrites(tc.history, map[string]string{"k": tc.final})
		switch {
		case tc.want == "" && len(lost) > 0:
			t.Errorf("%s: lost %v, want none", tc.name, lost)
		case tc.want != "" && len(lost) == 0:
			t.Errorf("%s: no lost write, want one (%s)", tc.name, tc.want)
		case tc.want != "" && !strings.Contains(lost[0].String(), tc.want):
			t.Errorf("%s: lost[0] = %q, want it to contain %q", tc.name, lost[0], tc.want)
		}
	}
}
