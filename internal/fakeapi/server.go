package fakeapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	if o.Dataset == nil && o.Config != nil {
		if err := o.Config.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Start creates a Server and serves it on addr (e.g. "127.0.0.1:0") in the
// background until Close. It returns an error, before listening, for
// options New would panic on: a refused Config (*SizeError).
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

type response struct {
	status int
	body   []byte
	header http.Header
}

func errResp(status, code int, msg string) response {
	return response{status: status, body: errorBody(status, code, msg)}
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
// answered (real ones only; Faults.OtherInFlight is not included).
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
	if !admitted {
		s.counters.do(func(c *Counters) { c.Throttled++ })
		s.writePlain(w, s.tooMany(d))
		return
	}
	defer s.inflight.Add(-1)
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
		s.writePlain(w, errResp(401, 20003, "Authenticate"))
		return
	}
	switch {
	case d.r429 < s.faults.Rate429:
		s.counters.do(func(c *Counters) { c.Injected429++ })
		s.writePlain(w, s.tooMany(d))
		return
	case d.r500 < s.faults.Rate500:
		s.counters.do(func(c *Counters) { c.Injected500++ })
		s.writePlain(w, errResp(500, 20500, "Internal Server Error"))
		return
	case d.r503 < s.faults.Rate503:
		s.counters.do(func(c *Counters) { c.Injected503++ })
		s.writePlain(w, errResp(503, 20503, "Service Unavailable"))
		return
	}

	resp := s.serve(r, rt)
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

func (s *Server) tooMany(d draws) response {
	resp := errResp(429, 20429, "Too Many Requests")
	if d.retry < s.faults.RetryAfterRate {
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
	h.Set("Content-Type", "application/json")
	h.Set("Twilio-Request-Id", fmt.Sprintf("RQ%032x", s.reqID.Add(1)))
}

func (s *Server) writePlain(w http.ResponseWriter, resp response) {
	s.headers(w.Header(), resp)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.WriteHeader(resp.status)
	w.Write(resp.body) //nolint:errcheck // client may be gone
	s.counters.status(resp.status)
}

// writeBroken sends the status, headers and a Content-Length for the full
// body, then only a prefix of the body, and closes the connection: with
// SO_LINGER 0 (TCP RST) when reset is set, normally otherwise.
func (s *Server) writeBroken(w http.ResponseWriter, resp response, cut float64, reset bool) {
	s.counters.status(resp.status)
	n := 1 + int(cut*float64(len(resp.body)-1)) // 1..len-1 bytes
	n = min(n, len(resp.body)-1)
	conn, bufrw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (e.g. HTTP/2): abort the stream after a prefix.
		s.headers(w.Header(), resp)
		w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
		w.WriteHeader(resp.status)
		w.Write(resp.body[:n]) //nolint:errcheck
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	h := w.Header().Clone()
	s.headers(h, resp)
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	h.Set("Connection", "close")
	fmt.Fprintf(bufrw, "HTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	h.Write(bufrw)             //nolint:errcheck
	bufrw.WriteString("\r\n")  //nolint:errcheck
	bufrw.Write(resp.body[:n]) //nolint:errcheck
	bufrw.Flush()              //nolint:errcheck
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
	listURL := base + "/" + strings.Join(segs, "/")

	switch rt.endpoint {
	case EndpointConfiguration:
		return jsonResp(ds.JSON(base, ds.Configuration()))
	case EndpointServices:
		svcs := ds.services
		return s.page(r, listURL, nil, "services", 100, len(svcs),
			func(i int) string { return svcs[i].svc.SID },
			func(i int) map[string]any { return ds.JSON(base, svcs[i].svc) })
	case EndpointUsers:
		us := svc.users
		return s.page(r, listURL, nil, "users", 50, len(us),
			func(i int) string { return us[i].SID },
			func(i int) map[string]any { return render(base, us[i]) })
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
		return s.page(r, listURL, nil, "conversations", 50, len(ucs),
			func(i int) string { return ucs[i].ConversationSID },
			func(i int) map[string]any { return render(base, ucs[i]) })
	case EndpointConversations:
		convs, filters, bad := filterConversations(svc.convs, q)
		if bad != nil {
			return *bad
		}
		return s.page(r, listURL, filters, "conversations", 100, len(convs),
			func(i int) string { return convs[i].SID },
			func(i int) map[string]any { return render(base, convs[i]) })
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
		return s.page(r, listURL, nil, "participants", 100, len(ps),
			func(i int) string { return ps[i].SID },
			func(i int) map[string]any { return render(base, ps[i]) })
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
		return s.page(r, listURL, filters, "conversations", 50, len(pcs),
			func(i int) string { return pcs[i].ParticipantSID },
			func(i int) map[string]any { return render(base, pcs[i]) })
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
// "PB<sid>" (page before sid).
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

func (s *Server) page(r *http.Request, listURL string, filters [][2]string, key string, maxSize, n int,
	sidAt func(int) string, render func(int) map[string]any) response {
	q := r.URL.Query()
	size := 50
	if q.Has("PageSize") {
		v, err := strconv.Atoi(q.Get("PageSize"))
		if err != nil || v < 1 {
			return badRequest("Invalid PageSize: must be an integer between 1 and " + strconv.Itoa(maxSize))
		}
		size = min(v, maxSize)
	}
	pageNo := 0
	if q.Has("Page") {
		v, err := strconv.Atoi(q.Get("Page"))
		if err != nil || v < 0 {
			return badRequest("Invalid Page: must be a non-negative integer")
		}
		pageNo = v
	}
	start := pageNo * size
	end := -1
	token := q.Get("PageToken")
	if token != "" {
		dir, sid, err := decodeToken(token)
		if err != nil {
			return badRequest("Invalid PageToken")
		}
		idx := -1
		for i := 0; i < n; i++ {
			if sidAt(i) == sid {
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
	items := make([]map[string]any, 0, end-start)
	for i := start; i < end; i++ {
		items = append(items, render(i))
	}
	meta := map[string]any{
		"page":              pageNo,
		"page_size":         size,
		"first_page_url":    pageURL(listURL, filters, size, 0, ""),
		"previous_page_url": nil,
		"url":               pageURL(listURL, filters, size, pageNo, token),
		"next_page_url":     nil,
		"key":               key,
	}
	if end < n {
		meta["next_page_url"] = pageURL(listURL, filters, size, pageNo+1, encodeToken("PA", sidAt(end-1)))
	}
	if start > 0 && start < n {
		meta["previous_page_url"] = pageURL(listURL, filters, size, max(pageNo-1, 0), encodeToken("PB", sidAt(start)))
	}
	return jsonResp(map[string]any{key: items, "meta": meta})
}
