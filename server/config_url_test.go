package server

import (
	"strings"
	"testing"
)

// TestHostPortWithoutScheme: a URL written as host:port is refused with what to add.
func TestHostPortWithoutScheme(t *testing.T) {
	for _, raw := range []string{"127.0.0.1:2380", "localhost:2380", "[::1]:2380"} {
		_, err := hostPort(raw)
		if want := "has no scheme; add http:// or https://"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("hostPort(%q): %v; want an error containing %q", raw, err, want)
		}
	}
	if addr, err := hostPort("http://127.0.0.1:2380"); err != nil || addr != "127.0.0.1:2380" {
		t.Errorf("hostPort(http://127.0.0.1:2380) = %q, %v", addr, err)
	}
}
