package e2e

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestKVModel checks the linearizability test's model on small histories, so that a
// passing TestLinearizability means the history was checked, not that the model
// accepts anything.
func TestKVModel(t *testing.T) {
	t.Parallel()
	op := func(client int, in linInput, call int64, out linOutput, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	get := func(value string) linOutput { return linOutput{value: value} }
	put := func(v string) linInput { return linInput{op: opPut, key: "k", value: v} }
	read := linInput{op: opGet, key: "k"}
	cas := func(expect, v string) linInput { return linInput{op: opCAS, key: "k", expect: expect, value: v} }
	unknown := linOutput{unknown: true}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"read your write", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, read, 20, get("a"), 30)}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, read, 20, get(""), 30)}, porcupine.Illegal},
		{"concurrent read may miss", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 30), op(1, read, 10, get(""), 20)}, porcupine.Ok},
		{"unknown put may land late", []porcupine.Operation{
			op(0, put("a"), 0, unknown, neverReturned), op(1, read, 20, get(""), 30), op(1, read, 40, get("a"), 50)}, porcupine.Ok},
		{"unknown put cannot be undone", []porcupine.Operation{
			op(0, put("a"), 0, unknown, neverReturned), op(1, read, 20, get("a"), 30), op(1, read, 40, get(""), 50)}, porcupine.Illegal},
		{"cas succeeds on its value", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, cas("a", "b"), 20, linOutput{succeeded: true}, 30),
			op(1, read, 40, get("b"), 50)}, porcupine.Ok},
		{"cas cannot fail on its value", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, cas("a", "b"), 20, linOutput{succeeded: false}, 30)}, porcupine.Illegal},
		{"cas cannot succeed on another value", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, cas("x", "b"), 20, linOutput{succeeded: true}, 30)}, porcupine.Illegal},
		{"unknown cas may apply", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, cas("a", "b"), 20, unknown, neverReturned),
			op(2, read, 30, get("a"), 40), op(2, read, 50, get("b"), 60)}, porcupine.Ok},
		{"unknown cas applies once", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, cas("a", "b"), 20, unknown, neverReturned),
			op(2, read, 30, get("b"), 40), op(2, read, 50, get("a"), 60)}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{
			op(0, put("a"), 0, linOutput{}, 10), op(1, linInput{op: opGet, key: "other"}, 20, get(""), 30)}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperationsTimeout(kvModel, tc.history, 0); got != tc.want {
			t.Errorf("%s: porcupine says %s, want %s", tc.name, got, tc.want)
		}
	}
}
