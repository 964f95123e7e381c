package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// The gateway over websockets, as etcd serves it (its wsproxy, from
// github.com/tmc/grpc-websocket-proxy): a client that upgrades a gateway request to
// a websocket sends the method's requests as JSON text messages and gets each
// answer, or each streamed result ({"result": …}), as one text message. This is
// how a browser, which cannot stream a request body, watches keys or keeps a lease
// alive through the gateway. A token goes in the Sec-WebSocket-Protocol header
// ("Bearer, <token>", browsers cannot set Authorization on a websocket) or in a
// cookie named "token"; the call is a POST whatever the upgrade's method.
//
// Written here on gorilla/websocket rather than with etcd's wsproxy: wsproxy reads
// each client message whole with no limit (a 100 MiB message is 100 MiB of this
// member's memory before the gateway sees it; its upgrader is not configurable),
// leaves its goroutines to end on their own after the member stops (nothing tracks
// a hijacked connection), and logs through logrus. Here a message is bounded as a
// request body is (gatewayMaxBodyBytes), the member's Stop ends and waits for every
// websocket, and nothing is logged per connection.

// gatewayWSCookie is the cookie wsproxy takes a token from.
const gatewayWSCookie = "token"

// gatewayWSMaxAnswerBytes bounds one answer sent as a message, as wsproxy's
// setting in etcd does: gRPC's largest message, in JSON.
const gatewayWSMaxAnswerBytes = math.MaxInt32

// gatewayWebsockets tracks the gateway's open websockets, so that Stop ends them.
type gatewayWebsockets struct {
	mu     sync.Mutex
	closed bool
	conns  map[*websocket.Conn]struct{}
	wg     sync.WaitGroup
}

// add tracks c, or reports false if the gateway is closed.
func (ws *gatewayWebsockets) add(c *websocket.Conn) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return false
	}
	if ws.conns == nil {
		ws.conns = map[*websocket.Conn]struct{}{}
	}
	ws.conns[c] = struct{}{}
	ws.wg.Add(1)
	return true
}

func (ws *gatewayWebsockets) done(c *websocket.Conn) {
	ws.mu.Lock()
	delete(ws.conns, c)
	ws.mu.Unlock()
	ws.wg.Done()
}

// close ends every websocket and waits until their handlers have returned.
func (ws *gatewayWebsockets) close() {
	ws.mu.Lock()
	ws.closed = true
	for c := range ws.conns {
		_ = c.Close()
	}
	ws.mu.Unlock()
	ws.wg.Wait()
}

// serveWebsocket upgrades r and relays between the websocket and the gateway's
// handler for r's path until either side ends.
func (g *gateway) serveWebsocket(w http.ResponseWriter, r *http.Request, maxMessageBytes int64) {
	var answer http.Header
	protocol := r.Header.Get("Sec-WebSocket-Protocol")
	if strings.HasPrefix(protocol, "Bearer") {
		answer = http.Header{"Sec-WebSocket-Protocol": {"Bearer"}}
	}
	upgrader := websocket.Upgrader{
		// etcd's default --cors "*": any origin, as the gateway's CORS headers say.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	conn, err := upgrader.Upgrade(w, r, answer)
	if err != nil {
		return // the upgrader answered the client with the error
	}
	if !g.websockets.add(conn) {
		_ = conn.Close()
		return
	}
	defer g.websockets.done(conn)
	defer conn.Close()
	conn.SetReadLimit(maxMessageBytes)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	requests, requestsW := io.Pipe()
	answers, answersW := io.Pipe()
	call, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL.String(), requests)
	if err != nil {
		return
	}
	// The client's address, for the password-attempt limiter (gatewayClientAddr).
	call.RemoteAddr = r.RemoteAddr
	if token, ok := strings.CutPrefix(protocol, "Bearer,"); ok {
		call.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	}
	if c, err := r.Cookie(gatewayWSCookie); err == nil {
		call.Header.Set("Authorization", "Bearer "+c.Value)
	}
	for _, h := range []string{"Origin", "Referer"} {
		if v := r.Header.Get(h); v != "" {
			call.Header.Set(h, v)
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		// The call; its answers end when it returns.
		defer answersW.Close()
		g.mux.ServeHTTP(&websocketAnswers{w: answersW, header: http.Header{}}, call)
	})
	// A method that takes one request reads the body to its end before it calls
	// (etcd's gateway does): its body ends after the first message. (Through
	// etcd's wsproxy such a call never answers.)
	bidi := r.URL.Path == "/v3/watch" || r.URL.Path == "/v3/lease/keepalive"
	wg.Go(func() {
		// The client's messages, one request per line of the call's body.
		defer cancel()
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				_ = requestsW.CloseWithError(io.EOF)
				return
			}
			msg = append(msg, '\n')
			if _, err := requestsW.Write(msg); err != nil {
				return
			}
			if !bidi {
				_ = requestsW.Close()
				// Read on, so that pings are answered and a close is seen.
				for {
					if _, _, err := conn.ReadMessage(); err != nil {
						return
					}
				}
			}
		}
	})
	// The call's answers, one message per line; ends when the call returns or the
	// client goes (cancel ends the call).
	scanner := bufio.NewScanner(answers)
	scanner.Buffer(make([]byte, 0, 64<<10), gatewayWSMaxAnswerBytes)
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		if err := conn.WriteMessage(websocket.TextMessage, scanner.Bytes()); err != nil {
			break
		}
	}
	cancel()
	_ = answers.CloseWithError(errors.New("websocket closed"))
	// The call's body ends as if the client had ended it (an error would be logged
	// by the gateway).
	_ = requestsW.Close()
	// Ends the read loop if the client is still connected.
	_ = conn.Close()
}

// websocketAnswers is the ResponseWriter of a call made over a websocket: the
// status and headers have nowhere to go once the connection is upgraded, and the
// body goes to the relay.
type websocketAnswers struct {
	w      io.Writer
	header http.Header
}

func (a *websocketAnswers) Header() http.Header         { return a.header }
func (a *websocketAnswers) Write(b []byte) (int, error) { return a.w.Write(b) }
func (a *websocketAnswers) WriteHeader(int)             {}
func (a *websocketAnswers) Flush()                      {}
