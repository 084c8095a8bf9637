package fakeapi

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials are the HTTP Basic credentials the server accepts: the account
// SID with its auth token, or an API key SID (SK...) with its secret.
type Credentials struct {
	AccountSID   string
	AuthToken    string
	APIKeySID    string
	APIKeySecret string
}

// DefaultCredentials returns the deterministic credentials used when
// Options.Credentials is zero: the dataset's account SID, and a token, API key
// SID and secret derived from the dataset seed.
func DefaultCredentials(ds *Dataset) Credentials {
	h := func(tag string) string {
		sum := sha256.Sum256([]byte(fmt.Sprintf("fakeapi/%s/%d", tag, ds.cfg.Seed)))
		return hex.EncodeToString(sum[:16])
	}
	return Credentials{
		AccountSID:   ds.AccountSID(),
		AuthToken:    h("auth-token"),
		APIKeySID:    "SK" + h("api-key-sid"),
		APIKeySecret: h("api-key-secret"),
	}
}

// Options configures a Server.
type Options struct {
	// Dataset is the data served; nil means NewDataset(*Config), or
	// NewDataset(DefaultConfig()) when Config is nil too.
	Dataset *Dataset
	// Config, used when Dataset is nil, is the configuration of the
	// dataset to generate. Start refuses one that Config.Validate refuses
	// (a *SizeError); New panics on it.
	Config *DatasetConfig
	// Faults configures injected failures; the zero value injects none.
	Faults Faults
	// Credentials are the accepted credentials; zero fields take the
	// DefaultCredentials values.
	Credentials Credentials
}

// Server is a simulated Twilio Conversations v1 API. It is an http.Handler
// and can be mounted in httptest.NewServer or started with Start. Absolute
// URLs in responses are built from the request's Host header.
type Server struct {
	ds       *Dataset
	faults   Faults
	creds    Credentials
	mu       sync.Mutex // guards rng
	rng      *rand.Rand
	inflight atomic.Int64
	reqID    atomic.Int64
	counters counterSet

	ln  net.Listener
	hs  *http.Server
	url string
}

// New returns a Server handler for opts (not listening; see Start). It
// panics on options Start would refuse.
func New(opts Options) *Server {
	if err := opts.validate(); err != nil {
		panic(err)
	}
	ds := opts.Dataset
	if ds == nil {
		cfg := DefaultConfig()
		if opts.Config != nil {
			cfg = *opts.Config
		}
		ds = NewDataset(cfg)
	}
	def := DefaultCredentials(ds)
	c := opts.Credentials
	if c.AccountSID == "" {
		c.AccountSID = def.AccountSID
	}
	if c.AuthToken == "" {
		c.AuthToken = def.AuthToken
	}
	if c.APIKeySID == "" {
		c.APIKeySID = def.APIKeySID
	}
	if c.APIKeySecret == "" {
		c.APIKeySecret = def.APIKeySecret
	}
	return &Server{
		ds: ds, faults: opts.Faults, creds: c,
		rng: rand.New(rand.NewPCG(uint64(opts.Faults.Seed), 0xfa017)),
	}
}

// validate reports options New cannot serve.
func (o Options) validate() error {
	if err := o.Faults.Validate(); err != nil {
		return err
	}
	if o.Dataset == nil && o.Config != nil {
		if err := o.Config.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Start creates a Server and serves it on addr (e.g. "127.0.0.1:0") in the
// background until Close. It returns an error, before listening, for
// options New would panic on: a refused Config (*SizeError) or Faults
// (Faults.Validate).
func Start(addr string, opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := New(opts)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.hs.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return s, nil
}

// URL returns the base URL of a started server ("http://127.0.0.1:PORT"),
// or "" for a server created with New.
func (s *Server) URL() string { return s.url }

// Close stops a started server, closing all connections. It is a no-op for
// a server created with New.
func (s *Server) Close() error {
	if s.hs == nil {
		return nil
	}
	return s.hs.Close()
}

// Dataset returns the dataset being served.
func (s *Server) Dataset() *Dataset { return s.ds }

// Faults returns the fault configuration.
func (s *Server) Faults() Faults { return s.faults }

// Credentials returns the accepted credentials.
func (s *Server) Credentials() Credentials { return s.creds }

// Counters returns a snapshot of the request and fault counters.
func (s *Server) Counters() Counters { return s.counters.snapshot() }

// ResetCounters zeroes every counter.
func (s *Server) ResetCounters() { s.counters.reset() }

// ---- errors ----

func errorBody(status, code int, msg string) []byte {
	b, _ := json.Marshal(map[string]any{
		"code":      code,
		"message":   msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
		"status":    status,
	})
	return b
}

// response is an answer to send. Its body is body, then padN copies of
// padByte, then tail: padding (Hostile.Oversized) is streamed, not held.
type response struct {
	status int
	body   []byte
	header http.Header
	// code and msg are the Twilio error code and message of an error
	// response (code 0 otherwise).
	code int
	msg  string

	padByte byte
	padN    int64
	tail    []byte
}

func errResp(status, code int, msg string) response {
	return response{status: status, body: errorBody(status, code, msg), code: code, msg: msg}
}

// size is the full body length.
func (r response) size() int64 { return int64(len(r.body)) + r.padN + int64(len(r.tail)) }

// writeBody writes the first limit bytes of the body.
func (r response) writeBody(w io.Writer, limit int64) error {
	part := func(b []byte) error {
		n := min(int64(len(b)), limit)
		limit -= n
		_, err := w.Write(b[:n])
		return err
	}
	if err := part(r.body); err != nil || limit == 0 {
		return err
	}
	if r.padN > 0 {
		chunk := bytes.Repeat([]byte{r.padByte}, int(min(r.padN, 64<<10)))
		for left := min(r.padN, limit); left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				return err
			}
			left -= n
			limit -= n
		}
	}
	return part(r.tail)
}

func notFound(r *http.Request) response {
	return errResp(404, 20404, "The requested resource "+r.URL.EscapedPath()+" was not found")
}

func badRequest(msg string) response { return errResp(400, 20001, msg) }

// ---- request flow ----

type draws struct{ r429, retry, r500, r503, reset, trunc, cut float64 }

func (s *Server) draw() draws {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.rng.Float64
	return draws{f(), f(), f(), f(), f(), f(), f()}
}

// ConcurrentRequestsHeader is the header every response carries: the
// number of the account's requests in flight when the request was admitted
// (or refused), itself and Faults.OtherInFlight included.
const ConcurrentRequestsHeader = "Twilio-Concurrent-Requests"

// InFlight returns the number of requests currently admitted and not yet
// answered (real ones only; Faults.OtherInFlight is not included). A
// request leaves the count when its answer is ready, before it is written.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// ServeHTTP implements http.Handler: count, admit (MaxInFlight), sleep
// (Latency), authenticate, inject random faults, route, and write (possibly
// resetting or truncating).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs, segErr := splitPath(r.URL.EscapedPath())
	rt := matchRoute(segs, segErr)
	s.counters.do(func(c *Counters) {
		c.Requests++
		if c.ByEndpoint == nil {
			c.ByEndpoint = map[string]int64{}
		}
		c.ByEndpoint[rt.endpoint]++
	})
	d := s.draw()

	// Admission: the phantom OtherInFlight requests hold their slots
	// permanently; a request is admitted if its own slot fits under
	// MaxInFlight beside them. Rejected requests take no slot.
	other := int64(max(s.faults.OtherInFlight, 0))
	var n int64
	admitted := true
	for {
		cur := s.inflight.Load()
		n = cur + 1
		if s.faults.MaxInFlight > 0 && n+other > int64(s.faults.MaxInFlight) {
			admitted = false
			break
		}
		if s.inflight.CompareAndSwap(cur, n) {
			break
		}
	}
	w.Header().Set(ConcurrentRequestsHeader, strconv.FormatInt(n+other, 10))
	// An admitted request leaves the in-flight count once its answer is
	// ready, before it is written: a client that has its answer is never
	// counted against its next request.
	release := func() {}
	send := func(resp response) {
		if s.faults.Hostile.EchoAuthorization && s.faults.Hostile.anyEndpoint(rt.endpoint) {
			resp = s.echoAuthorization(r, resp)
		}
		release()
		s.writePlain(w, resp)
	}
	if !admitted {
		s.counters.do(func(c *Counters) { c.Throttled++ })
		send(s.tooMany(d, rt))
		return
	}
	var once sync.Once
	release = func() { once.Do(func() { s.inflight.Add(-1) }) }
	defer release()
	s.counters.do(func(c *Counters) {
		c.PeakInFlight = max(c.PeakInFlight, n)
		c.PeakConcurrentRequests = max(c.PeakConcurrentRequests, n+other)
	})

	if s.faults.Latency > 0 {
		t := time.NewTimer(s.faults.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	if !s.authorized(r) {
		send(errResp(401, 20003, "Authenticate"))
		return
	}
	switch {
	case d.r429 < s.faults.Rate429:
		s.counters.do(func(c *Counters) { c.Injected429++ })
		send(s.tooMany(d, rt))
		return
	case d.r500 < s.faults.Rate500:
		s.counters.do(func(c *Counters) { c.Injected500++ })
		send(errResp(500, 20500, "Internal Server Error"))
		return
	case d.r503 < s.faults.Rate503:
		s.counters.do(func(c *Counters) { c.Injected503++ })
		send(errResp(503, 20503, "Service Unavailable"))
		return
	}

	resp := s.serve(r, rt)
	if s.faults.Hostile.EchoAuthorization && s.faults.Hostile.anyEndpoint(rt.endpoint) {
		resp = s.echoAuthorization(r, resp)
	}
	release()
	switch {
	case d.reset < s.faults.RateReset:
		s.counters.do(func(c *Counters) { c.Resets++ })
		s.writeBroken(w, resp, d.cut, true)
	case d.trunc < s.faults.RateTruncate:
		s.counters.do(func(c *Counters) { c.Truncations++ })
		s.writeBroken(w, resp, d.cut, false)
	default:
		s.writePlain(w, resp)
	}
}

func (s *Server) tooMany(d draws, rt route) response {
	resp := errResp(429, 20429, "Too Many Requests")
	switch {
	case s.faults.Hostile.HugeRetryAfter && s.faults.Hostile.anyEndpoint(rt.endpoint):
		resp.header = http.Header{"Retry-After": {strconv.Itoa(HugeRetryAfterSeconds)}}
		s.counters.do(func(c *Counters) { c.RetryAfter++; c.Hostile.HugeRetryAfter++ })
	case d.retry < s.faults.RetryAfterRate:
		resp.header = http.Header{"Retry-After": {"1"}}
		s.counters.do(func(c *Counters) { c.RetryAfter++ })
	}
	return resp
}

func (s *Server) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	return (u == s.creds.AccountSID && p == s.creds.AuthToken) ||
		(u == s.creds.APIKeySID && p == s.creds.APIKeySecret)
}

func (s *Server) headers(h http.Header, resp response) {
	for k, v := range resp.header {
		h[k] = v
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Twilio-Request-Id", fmt.Sprintf("RQ%032x", s.reqID.Add(1)))
}

func (s *Server) writePlain(w http.ResponseWriter, resp response) {
	s.headers(w.Header(), resp)
	w.Header().Set("Content-Length", strconv.FormatInt(resp.size(), 10))
	w.WriteHeader(resp.status)
	resp.writeBody(w, resp.size()) //nolint:errcheck // client may be gone
	s.counters.status(resp.status)
}

// writeBroken sends the status, headers and a Content-Length for the full
// body, then only a prefix of the body, and closes the connection: with
// SO_LINGER 0 (TCP RST) when reset is set, normally otherwise.
func (s *Server) writeBroken(w http.ResponseWriter, resp response, cut float64, reset bool) {
	s.counters.status(resp.status)
	size := resp.size()
	n := 1 + int64(cut*float64(size-1)) // 1..size-1 bytes
	n = min(n, size-1)
	conn, bufrw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (e.g. HTTP/2): abort the stream after a prefix.
		s.headers(w.Header(), resp)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(resp.status)
		resp.writeBody(w, n) //nolint:errcheck
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	h := w.Header().Clone()
	s.headers(h, resp)
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Connection", "close")
	fmt.Fprintf(bufrw, "HTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	h.Write(bufrw)            //nolint:errcheck
	bufrw.WriteString("\r\n") //nolint:errcheck
	resp.writeBody(bufrw, n)  //nolint:errcheck
	bufrw.Flush()             //nolint:errcheck
	if reset {
		if tc, ok := conn.(*net.TCPConn); ok {
			time.Sleep(2 * time.Millisecond) // let the prefix reach the client first
			tc.SetLinger(0)                  //nolint:errcheck
		}
	}
}

// ---- routing ----

type route struct {
	endpoint   string
	service    string // service SID; "" = default service
	defaultRt  bool
	user, conv string
	ok         bool
}

func splitPath(escaped string) ([]string, error) {
	if !strings.HasPrefix(escaped, "/") {
		return nil, errors.New("relative path")
	}
	raw := strings.Split(escaped[1:], "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		u, err := url.PathUnescape(r)
		if err != nil {
			return nil, err
		}
		if u == "" {
			return nil, errors.New("empty segment")
		}
		segs[i] = u
	}
	return segs, nil
}

func matchRoute(segs []string, err error) route {
	bad := route{endpoint: EndpointUnknown}
	if err != nil || len(segs) < 2 || segs[0] != "v1" {
		return bad
	}
	rest := segs[1:]
	rt := route{ok: true, defaultRt: true}
	if rest[0] == "Configuration" {
		if len(rest) == 1 {
			rt.endpoint = EndpointConfiguration
			return rt
		}
		return bad
	}
	if rest[0] == "Services" {
		if len(rest) == 1 {
			rt.endpoint = EndpointServices
			return rt
		}
		if len(rest) < 3 {
			return bad
		}
		rt.service, rt.defaultRt = rest[1], false
		rest = rest[2:]
	}
	switch {
	case len(rest) == 1 && rest[0] == "Users":
		rt.endpoint = EndpointUsers
	case len(rest) == 3 && rest[0] == "Users" && rest[2] == "Conversations":
		rt.endpoint, rt.user = EndpointUserConversations, rest[1]
	case len(rest) == 1 && rest[0] == "Conversations":
		rt.endpoint = EndpointConversations
	case len(rest) == 3 && rest[0] == "Conversations" && rest[2] == "Participants":
		rt.endpoint, rt.conv = EndpointParticipants, rest[1]
	case len(rest) == 1 && rest[0] == "ParticipantConversations":
		rt.endpoint = EndpointParticipantConversations
	default:
		return bad
	}
	return rt
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func jsonResp(v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		return errResp(500, 20500, "Internal Server Error")
	}
	return response{status: 200, body: b}
}

func (s *Server) serve(r *http.Request, rt route) response {
	if !rt.ok {
		return notFound(r)
	}
	if r.Method != http.MethodGet {
		return errResp(405, 20004, "Method not allowed")
	}
	if h := s.faults.Hostile; h.HTML404 && h.child(rt.endpoint) {
		s.counters.do(func(c *Counters) { c.Hostile.HTML404++ })
		return htmlNotFound()
	}
	base := baseURL(r)
	ds := s.ds
	svcSID := rt.service
	if rt.defaultRt {
		svcSID = ds.DefaultServiceSID()
	}
	render := ds.JSON
	if rt.defaultRt {
		render = ds.DefaultRouteJSON
	}
	var svc *serviceData
	if rt.endpoint != EndpointConfiguration && rt.endpoint != EndpointServices {
		if svc = ds.service(svcSID); svc == nil {
			return notFound(r)
		}
		if slices.Contains(s.faults.DeletedServiceSIDs, svcSID) {
			s.counters.do(func(c *Counters) { c.DeletedService404++ })
			return notFound(r)
		}
	}
	q := r.URL.Query()
	// Canonical path for meta URLs: re-escape the decoded segments.
	segs, _ := splitPath(r.URL.EscapedPath())
	for i := range segs {
		segs[i] = url.PathEscape(segs[i])
	}
	path := "/" + strings.Join(segs, "/")
	listURL := base + path
	// tag names the list (host-free) for the SIDs of synthetic rows.
	tag := rt.endpoint + " " + path
	sid := func(prefix string, i int) string { return s.synthSID(prefix, tag, i) }
	list := func(sp listSpec) response {
		sp.endpoint = rt.endpoint
		return s.list(r, path, listURL, sp)
	}

	switch rt.endpoint {
	case EndpointConfiguration:
		return jsonResp(ds.JSON(base, ds.Configuration()))
	case EndpointServices:
		svcs := ds.services
		return list(listSpec{key: "services", maxSize: 100, n: len(svcs),
			sidAt:  func(i int) string { return svcs[i].svc.SID },
			render: func(i int) map[string]any { return ds.JSON(base, svcs[i].svc) },
			synth: func(i int) map[string]any {
				return ds.JSON(base, Service{SID: sid("IS", i), FriendlyName: fmt.Sprintf("Synthetic service %d", i),
					DateCreated: synthTime(i), DateUpdated: synthTime(i)})
			}})
	case EndpointUsers:
		us := svc.users
		return list(listSpec{key: "users", maxSize: 50, n: len(us),
			sidAt:  func(i int) string { return us[i].SID },
			render: func(i int) map[string]any { return render(base, us[i]) },
			synth: func(i int) map[string]any {
				return render(base, User{SID: sid("US", i), ChatServiceSID: svcSID, Identity: fmt.Sprintf("synthetic.user.%d", i),
					Attributes: "{}", DateCreated: synthTime(i), DateUpdated: synthTime(i)})
			}})
	case EndpointUserConversations:
		u, ok := ds.User(svcSID, rt.user)
		if !ok {
			return notFound(r)
		}
		if s.faults.IsUserDeleted(u.SID) {
			s.counters.do(func(c *Counters) { c.DeletedUser404++ })
			return notFound(r)
		}
		ucs := svc.userConvs[u.SID]
		return list(listSpec{key: "conversations", maxSize: 50, n: len(ucs), tooLong: svc.userBySID[u.SID] == 0,
			sidAt:  func(i int) string { return ucs[i].ConversationSID },
			render: func(i int) map[string]any { return render(base, ucs[i]) },
			synth: func(i int) map[string]any {
				return render(base, UserConversation{ChatServiceSID: svcSID, ConversationSID: sid("CH", i),
					ParticipantSID: s.synthSID("MB", tag+" participant", i), UserSID: u.SID,
					ConversationState: StateActive, Attributes: "{}", NotificationLevel: NotificationDefault,
					DateCreated: synthTime(i), DateUpdated: synthTime(i)})
			}})
	case EndpointConversations:
		convs, filters, bad := filterConversations(svc.convs, q)
		if bad != nil {
			return *bad
		}
		state := cmp.Or(q.Get("State"), StateActive)
		return list(listSpec{key: "conversations", maxSize: 100, n: len(convs), filters: filters,
			sidAt:  func(i int) string { return convs[i].SID },
			render: func(i int) map[string]any { return render(base, convs[i]) },
			synth: func(i int) map[string]any {
				return render(base, Conversation{SID: sid("CH", i), ChatServiceSID: svcSID, Attributes: "{}", State: state,
					DateCreated: synthTime(i), DateUpdated: synthTime(i)})
			}})
	case EndpointParticipants:
		c, ok := ds.Conversation(svcSID, rt.conv)
		if !ok {
			return notFound(r)
		}
		if s.faults.IsConversationDeleted(c.SID) {
			s.counters.do(func(c *Counters) { c.DeletedConversation404++ })
			return notFound(r)
		}
		ps := svc.parts[c.SID]
		return list(listSpec{key: "participants", maxSize: 100, n: len(ps), tooLong: svc.convBySID[c.SID] == 1,
			sidAt:  func(i int) string { return ps[i].SID },
			render: func(i int) map[string]any { return render(base, ps[i]) },
			synth: func(i int) map[string]any {
				return render(base, Participant{SID: sid("MB", i), ConversationSID: c.SID, ChatServiceSID: svcSID, Attributes: "{}",
					MessagingBinding:  &MessagingBinding{Type: "sms", Address: ptr(synthAddress(i)), ProxyAddress: ptr("+12015550000")},
					NotificationLevel: NotificationDefault, DateCreated: synthTime(i), DateUpdated: synthTime(i)})
			}})
	case EndpointParticipantConversations:
		identity, address := q.Get("Identity"), q.Get("Address")
		if identity == "" && address == "" {
			return badRequest("Either Identity or Address must be specified")
		}
		var filters [][2]string
		if q.Has("Identity") {
			filters = append(filters, [2]string{"Identity", identity})
		}
		if q.Has("Address") {
			filters = append(filters, [2]string{"Address", address})
		}
		pcs := ds.ParticipantConversations(svcSID, identity, address)
		return list(listSpec{key: "conversations", maxSize: 50, n: len(pcs), filters: filters,
			sidAt:  func(i int) string { return pcs[i].ParticipantSID },
			render: func(i int) map[string]any { return render(base, pcs[i]) },
			synth: func(i int) map[string]any {
				pc := ParticipantConversation{ChatServiceSID: svcSID, ParticipantSID: sid("MB", i),
					ConversationSID: s.synthSID("CH", tag+" conversation", i), ConversationAttributes: "{}",
					ConversationState: StateActive, ConversationDateCreated: synthTime(i), ConversationDateUpdated: synthTime(i)}
				if identity != "" {
					pc.ParticipantIdentity = ptr(identity)
				}
				if address != "" {
					pc.ParticipantMessagingBinding = &MessagingBinding{Type: "sms", Address: ptr(address)}
				}
				return render(base, pc)
			}})
	}
	return notFound(r)
}

// parseISODate accepts RFC3339 date-times and plain dates (YYYY-MM-DD, taken
// as the start of the day, or its last second when endOfDay).
func parseISODate(v string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, err
	}
	if endOfDay {
		t = t.Add(24*time.Hour - time.Second)
	}
	return t, nil
}

func filterConversations(all []Conversation, q url.Values) ([]Conversation, [][2]string, *response) {
	var filters [][2]string
	var start, end time.Time
	var err error
	dated := false
	if q.Has("StartDate") {
		if start, err = parseISODate(q.Get("StartDate"), false); err != nil {
			r := badRequest("Invalid StartDate: must be an ISO8601 date or date-time")
			return nil, nil, &r
		}
		filters = append(filters, [2]string{"StartDate", q.Get("StartDate")})
		dated = true
	}
	if q.Has("EndDate") {
		if end, err = parseISODate(q.Get("EndDate"), true); err != nil {
			r := badRequest("Invalid EndDate: must be an ISO8601 date or date-time")
			return nil, nil, &r
		}
		filters = append(filters, [2]string{"EndDate", q.Get("EndDate")})
		dated = true
	}
	state := q.Get("State")
	if q.Has("State") {
		switch state {
		case StateInitializing, StateInactive, StateActive, StateClosed:
		default:
			r := badRequest("Invalid State: must be one of initializing, inactive, active, closed")
			return nil, nil, &r
		}
		filters = append(filters, [2]string{"State", state})
	}
	if len(filters) == 0 {
		return all, nil, nil
	}
	var out []Conversation
	for _, c := range all {
		if !start.IsZero() && c.DateCreated.Before(start) {
			continue
		}
		if !end.IsZero() && c.DateCreated.After(end) {
			continue
		}
		if state != "" && c.State != state {
			continue
		}
		out = append(out, c)
	}
	if dated { // the spec: date-filtered lists are newest first
		slices.Reverse(out)
	}
	return out, filters, nil
}

// ---- pagination ----

// queryEscape escapes a query value with %20 for spaces (so '+' is always
// a literal %2B).
func queryEscape(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "+", "%20")
}

func pageURL(listURL string, filters [][2]string, size, page int, token string) string {
	var b strings.Builder
	b.WriteString(listURL)
	b.WriteByte('?')
	for _, f := range filters {
		b.WriteString(f[0] + "=" + queryEscape(f[1]) + "&")
	}
	fmt.Fprintf(&b, "PageSize=%d&Page=%d", size, page)
	if token != "" {
		b.WriteString("&PageToken=" + queryEscape(token))
	}
	return b.String()
}

// Page tokens are opaque: base64url of "PA<sid>" (page after sid) or
// "PB<sid>" (page before sid) on real lists, "PX<index>" (page starting at
// row index) on the generated lists of Hostile.EndlessList and TooLongList.
func encodeToken(dir, sid string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(dir + sid))
}

func decodeToken(tok string) (dir, sid string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 3 || (string(b[:2]) != "PA" && string(b[:2]) != "PB") {
		return "", "", errors.New("invalid page token")
	}
	return string(b[:2]), string(b[2:]), nil
}

// maxIndex bounds row indexes and page numbers, far from overflow.
const maxIndex = 1 << 40

func encodeIndexToken(i int) string { return encodeToken("PX", strconv.Itoa(i)) }

func decodeIndexToken(tok string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 3 || string(b[:2]) != "PX" {
		return 0, errors.New("invalid page token")
	}
	i, err := strconv.Atoi(string(b[2:]))
	if err != nil || i < 0 || i > maxIndex {
		return 0, errors.New("invalid page token")
	}
	return i, nil
}

// repeat draws whether this page repeats a row (Faults.RateRepeat).
func (s *Server) repeat() bool {
	if s.faults.RateRepeat <= 0 {
		return false
	}
	s.mu.Lock()
	hit := s.rng.Float64() < s.faults.RateRepeat
	s.mu.Unlock()
	if hit {
		s.counters.do(func(c *Counters) { c.Repeats++ })
	}
	return hit
}

// listSpec describes the rows of one list request.
type listSpec struct {
	endpoint string
	key      string // the list's array key (meta.key)
	maxSize  int
	filters  [][2]string // echoed in page URLs
	n        int
	sidAt    func(int) string
	render   func(int) map[string]any
	// synth renders synthetic row i, with fresh SIDs (EndlessFresh,
	// TooLongList).
	synth func(int) map[string]any
	// tooLong marks the lists TooLongList lengthens.
	tooLong bool
}

// pageParams are a list request's paging parameters.
type pageParams struct {
	size, pageNo int
	token        string
}

func parsePageParams(r *http.Request, maxSize int) (pageParams, *response) {
	q := r.URL.Query()
	p := pageParams{size: 50, token: q.Get("PageToken")}
	if q.Has("PageSize") {
		v, err := strconv.Atoi(q.Get("PageSize"))
		if err != nil || v < 1 {
			bad := badRequest("Invalid PageSize: must be an integer between 1 and " + strconv.Itoa(maxSize))
			return p, &bad
		}
		p.size = min(v, maxSize)
	}
	if q.Has("Page") {
		v, err := strconv.Atoi(q.Get("Page"))
		if err != nil || v < 0 || v > maxIndex {
			bad := badRequest("Invalid Page: must be a non-negative integer")
			return p, &bad
		}
		p.pageNo = v
	}
	return p, nil
}

// pageOut is one page being built.
type pageOut struct {
	key   string
	obj   map[string]any // {key: items, "meta": meta}
	items []any
	meta  map[string]any
	start int  // index of the first row
	last  bool // no next page
	// cycleURL is where TokenCycle points a last page's next_page_url: the
	// previous page's URL, or the page's own on a first page.
	cycleURL string
}

func newPageOut(sp listSpec, p pageParams, listURL string, items []any, start int) pageOut {
	meta := map[string]any{
		"page":              p.pageNo,
		"page_size":         p.size,
		"first_page_url":    pageURL(listURL, sp.filters, p.size, 0, ""),
		"previous_page_url": nil,
		"url":               pageURL(listURL, sp.filters, p.size, p.pageNo, p.token),
		"next_page_url":     nil,
		"key":               sp.key,
	}
	return pageOut{key: sp.key, obj: map[string]any{sp.key: items, "meta": meta}, items: items, meta: meta, start: start}
}

// list serves one page of a list, applying the Hostile modes selected for
// its endpoint.
func (s *Server) list(r *http.Request, path, listURL string, sp listSpec) response {
	p, bad := parsePageParams(r, sp.maxSize)
	if bad != nil {
		return *bad
	}
	h := s.faults.Hostile
	rowAt := func(i int) map[string]any {
		if i < sp.n {
			return sp.render(i)
		}
		return sp.synth(i)
	}
	var po pageOut
	switch {
	case h.EndlessList != "" && h.list(sp.endpoint):
		po, bad = s.indexPage(p, listURL, sp, -1, func(start, size int) []any {
			var out []any
			if h.EndlessList == EndlessRepeat {
				for i := range min(size, sp.n) {
					out = append(out, sp.render(i))
				}
				return out
			}
			for i := start; i < start+size; i++ {
				out = append(out, rowAt(i))
			}
			return out
		})
		if bad == nil {
			s.counters.do(func(c *Counters) { c.Hostile.EndlessPages++ })
		}
	case h.TooLongList > sp.n && sp.tooLong && h.child(sp.endpoint):
		po, bad = s.indexPage(p, listURL, sp, h.TooLongList, func(start, size int) []any {
			var out []any
			for i := start; i < min(start+size, h.TooLongList); i++ {
				out = append(out, rowAt(i))
			}
			return out
		})
		if bad == nil {
			s.counters.do(func(c *Counters) { c.Hostile.TooLongPages++ })
		}
	default:
		po, bad = s.page(p, listURL, sp)
	}
	if bad != nil {
		return *bad
	}
	var where strings.Builder
	where.WriteString(path)
	for _, f := range sp.filters {
		where.WriteString("&" + f[0] + "=" + f[1])
	}
	where.WriteString("#" + strconv.Itoa(po.start))
	s.mutate(sp.endpoint, sp.key, where.String(), &po)
	return s.pageResp(sp.endpoint, po)
}

// page serves a page of a real list, with SID-anchored tokens.
func (s *Server) page(p pageParams, listURL string, sp listSpec) (pageOut, *response) {
	n, size, pageNo, token := sp.n, p.size, p.pageNo, p.token
	start := pageNo * size
	end := -1
	if token != "" {
		dir, sid, err := decodeToken(token)
		if err != nil {
			bad := badRequest("Invalid PageToken")
			return pageOut{}, &bad
		}
		idx := -1
		for i := 0; i < n; i++ {
			if sp.sidAt(i) == sid {
				idx = i
				break
			}
		}
		switch {
		case idx < 0: // anchor vanished: fall back to the page number
		case dir == "PA":
			start = idx + 1
		case idx == 0:
			start = 0
		default:
			start = max(0, idx-size)
			end = idx
		}
	}
	if token != "" && end < 0 && start > 0 && start < n && s.repeat() {
		start-- // the cursor drifted: the previous page's last row comes again
	}
	start = min(max(start, 0), n)
	if end < 0 || end > n {
		end = min(start+size, n)
	}
	items := make([]any, 0, end-start)
	for i := start; i < end; i++ {
		items = append(items, sp.render(i))
	}
	po := newPageOut(sp, p, listURL, items, start)
	if end < n {
		po.meta["next_page_url"] = pageURL(listURL, sp.filters, size, pageNo+1, encodeToken("PA", sp.sidAt(end-1)))
	} else {
		po.last = true
	}
	if start > 0 && start < n {
		po.meta["previous_page_url"] = pageURL(listURL, sp.filters, size, max(pageNo-1, 0), encodeToken("PB", sp.sidAt(start)))
	}
	switch prev := start - size; {
	case start == 0:
		po.cycleURL = po.meta["url"].(string)
	case prev <= 0:
		po.cycleURL = pageURL(listURL, sp.filters, size, 0, "")
	default:
		po.cycleURL = pageURL(listURL, sp.filters, size, max(pageNo-1, 0), encodeToken("PA", sp.sidAt(prev-1)))
	}
	return po, nil
}

// indexPage serves a page of a generated list of total rows (-1: endless)
// with index tokens; rows returns the page's rows from start.
func (s *Server) indexPage(p pageParams, listURL string, sp listSpec, total int, rows func(start, size int) []any) (pageOut, *response) {
	start := p.pageNo * p.size
	if p.token != "" {
		i, err := decodeIndexToken(p.token)
		if err != nil {
			bad := badRequest("Invalid PageToken")
			return pageOut{}, &bad
		}
		start = i
	}
	if total >= 0 {
		start = min(start, total)
	}
	items := rows(start, p.size)
	if items == nil {
		items = []any{}
	}
	po := newPageOut(sp, p, listURL, items, start)
	end := start + p.size
	if total < 0 || end < total {
		po.meta["next_page_url"] = pageURL(listURL, sp.filters, p.size, p.pageNo+1, encodeIndexToken(end))
	} else {
		po.last = true
	}
	if start > 0 {
		po.meta["previous_page_url"] = pageURL(listURL, sp.filters, p.size, max(p.pageNo-1, 0), encodeIndexToken(max(start-p.size, 0)))
	}
	switch prev := start - p.size; {
	case start == 0:
		po.cycleURL = po.meta["url"].(string)
	case prev <= 0:
		po.cycleURL = pageURL(listURL, sp.filters, p.size, 0, "")
	default:
		po.cycleURL = pageURL(listURL, sp.filters, p.size, max(p.pageNo-1, 0), encodeIndexToken(prev))
	}
	return po, nil
}
