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

// TestTLSCheckFlagsAreNamedAsTheyAreSpelt: the client side's flags about checking a
// client's certificate carry "client-" (an unreadable --client-crl-file was reported
// as "--crl-file", a flag that does not exist).
func TestTLSCheckFlagsAreNamedAsTheyAreSpelt(t *testing.T) {
	for _, tc := range []struct {
		side       tlsSide
		name, want string
	}{
		{clientSide, "crl-file", "--client-crl-file"},
		{clientSide, "cert-allowed-hostname", "--client-cert-allowed-hostname"},
		{peerSide, "crl-file", "--peer-crl-file"},
		{peerSide, "cert-allowed-cn", "--peer-cert-allowed-cn"},
	} {
		if got := tc.side.checkFlag(tc.name); got != tc.want {
			t.Errorf("%s side's %s flag is %q, want %q", tc.side.prefix, tc.name, got, tc.want)
		}
	}
}

// TestURLsThatSpellOneAddressTwoWaysAreRefused: a path, query, fragment or user in a
// member's URL is refused in etcd's words, and a URL to listen on must name an IP
// address or localhost.
func TestURLsThatSpellOneAddressTwoWaysAreRefused(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.1:2380/":       "URL must not contain a path: http://127.0.0.1:2380/",
		"http://127.0.0.1:2380/x":      "URL must not contain a path",
		"http://example.invalid:2380":  "expected IP in URL for binding (http://example.invalid:2380)",
		"https://some.host.name:2380":  "expected IP in URL for binding",
		"http://[::1]:2380/":           "URL must not contain a path",
		"http://127.0.0.1:99999":       "outside 1-65535",
		"http://localhost":             "has no port",
		"127.0.0.1:2380":               "has no scheme",
		"ftp://127.0.0.1:2380":         "is not supported",
		"http://0.0.0.0:2380/metrics/": "URL must not contain a path",
	} {
		if _, err := bindURLHostPort(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bindURLHostPort(%q): %v; want an error containing %q", raw, err, want)
		}
	}
	for _, raw := range []string{"http://127.0.0.1:2380", "https://[::1]:2380", "http://localhost:2380", "http://0.0.0.0:2379"} {
		if _, err := bindURLHostPort(raw); err != nil {
			t.Errorf("bindURLHostPort(%q): %v", raw, err)
		}
	}
	if _, err := memberURLHostPort("http://some.host.name:2380"); err != nil {
		t.Errorf("a name in a URL to advertise: %v", err)
	}
	// etcd takes a query or a user in a URL to listen on or advertise, and so does
	// raftkv; in a peer URL of --initial-cluster they would be a second spelling.
	for _, raw := range []string{"http://127.0.0.1:2380?a=b", "http://127.0.0.1:2380#f", "http://u:p@127.0.0.1:2380", "http://127.0.0.1:2380?"} {
		if _, err := bindURLHostPort(raw); err != nil {
			t.Errorf("bindURLHostPort(%q): %v; etcd takes it", raw, err)
		}
		if _, err := memberURLHostPort(raw); err == nil || !strings.Contains(err.Error(), "URL must not contain a query, fragment or user") {
			t.Errorf("memberURLHostPort(%q): %v; want it refused", raw, err)
		}
	}
}
