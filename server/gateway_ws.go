package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
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

// gatewayWSCloseWait bounds the write of a close frame to a client.
const gatewayWSCloseWait = time.Second

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

// open returns how many websockets are open.
func (ws *gatewayWebsockets) open() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.conns)
}

// close ends every websocket and waits until their handlers have returned.
func (ws *gatewayWebsockets) close() {
	ws.mu.Lock()
	ws.closed = true
	conns := make([]*websocket.Conn, 0, len(ws.conns))
	for c := range ws.conns {
		conns = append(conns, c)
	}
	ws.mu.Unlock()
	for _, c := range conns {
		closeWebsocket(c, websocket.CloseGoingAway)
	}
	ws.wg.Wait()
}

// serveWebsocket upgrades r and relays between the websocket and the gateway's
// handler for r's path until the call ends, the client goes, or the member stops;
// it closes the websocket with 1000 when the call ends, 1001 at Stop.
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
		closeWebsocket(conn, websocket.CloseGoingAway)
		return
	}
	defer g.websockets.done(conn)
	conn.SetReadLimit(maxMessageBytes)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	requests, requestsW := io.Pipe()
	answers, answersW := io.Pipe()
	call, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL.String(), requests)
	if err != nil {
		closeWebsocket(conn, websocket.CloseInternalServerErr)
		return
	}
	// The client's address, for the password-attempt limiter (gatewayClientAddr).
	call.RemoteAddr = r.RemoteAddr
	if protocol != "" {
		// As wsproxy: "Bearer, <token>" anywhere in the header is the token, and a
		// header without one sends an empty token (refused with auth enabled).
		token := ""
		if _, t, ok := strings.Cut(protocol, "Bearer,"); ok {
			token = "Bearer " + strings.TrimSpace(t)
		}
		call.Header.Set("Authorization", token)
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
	wg.Go(func() {
		defer cancel()
		g.relayRequests(conn, r.URL.Path, requestsW)
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
	closeWebsocket(conn, websocket.CloseNormalClosure)
}

// relayRequests writes the client's messages into the call's body, one request per
// line, until the client goes or the call stops reading. Then it reads on, so that
// pings are answered and the client's close is seen.
//
// The gateway's handler reads a stream's requests until one does not decode; then
// it stops reading, and a write of the next would block forever, with nobody
// reading the websocket any more. So a stream's message is decoded here first, as
// the handler will: one that does not decode is still passed on (the handler logs
// it and ends the stream's sending side, as etcd's does), and ends the body. A
// method that takes one request reads the body to its end before it calls (etcd's
// gateway does): its body ends after the first message. (Through etcd's wsproxy
// such a call never answers.)
func (g *gateway) relayRequests(conn *websocket.Conn, path string, body *io.PipeWriter) {
	defer func() {
		_ = body.Close()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	var stream func() proto.Message
	switch path {
	case "/v3/watch":
		stream = func() proto.Message { return &pb.WatchRequest{} }
	case "/v3/lease/keepalive":
		stream = func() proto.Message { return &pb.LeaseKeepAliveRequest{} }
	}
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		decodes := stream != nil && g.decodes(msg, stream)
		if _, err := body.Write(append(msg, '\n')); err != nil || !decodes {
			return
		}
	}
}

// decodes reports whether every JSON value in msg decodes as a request of the
// stream, as the gateway's handler will decode them.
func (g *gateway) decodes(msg []byte, request func() proto.Message) bool {
	dec := g.jsonpb.NewDecoder(bytes.NewReader(msg))
	for {
		switch err := dec.Decode(request()); {
		case errors.Is(err, io.EOF):
			return true
		case err != nil:
			return false
		}
	}
}

// closeWebsocket sends the client a close frame with code, then closes conn.
func closeWebsocket(conn *websocket.Conn, code int) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""),
		time.Now().Add(gatewayWSCloseWait))
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
