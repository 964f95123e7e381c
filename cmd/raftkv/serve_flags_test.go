package main

import (
	"strings"
	"testing"
)

// TestMaxResponseBytesHelp: --max-response-bytes's help says what the member does
// with a larger range (refuses it; read it in pages) and what 0 means.
func TestMaxResponseBytesHelp(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "--help")
	_, after, ok := strings.Cut(stdout, "\n  --max-response-bytes '0'\n")
	if code != 0 || !ok {
		t.Fatalf("raftkv --help: exit %d, no --max-response-bytes:\n%s", code, stdout)
	}
	help, _, _ := strings.Cut(after, "\n  --")
	for _, want := range []string{"refused", "ResourceExhausted", "in pages", "limit", "(0: 512 MiB)"} {
		if !strings.Contains(help, want) {
			t.Errorf("--max-response-bytes help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "more=true") {
		t.Errorf("--max-response-bytes help still says a larger range answers with more=true:\n%s", help)
	}
}
