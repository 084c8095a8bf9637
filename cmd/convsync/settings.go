package main

// Settings: every flag of export, lookup and sql can also be given as an
// environment variable CONVSYNC_<FLAG> or as a key of a TOML file named by
// --config FILE (or CONVSYNC_CONFIG). The command line wins over the
// environment, the environment over the file. Values are applied with
// flag.FlagSet.Set, so they are parsed and refused exactly as on the command
// line; an error names where the value came from. See README.md,
// Configuration.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/transform"
)

const (
	// envPrefix starts the environment variable of a flag: CONVSYNC_DUCKDB.
	envPrefix = "CONVSYNC_"
	// configFlag names the config file; its variable is CONVSYNC_CONFIG.
	configFlag = "config"
	// maxConfigSize bounds what is read of a config file.
	maxConfigSize = 1 << 20
)

// flagKind is what a flag's value is, and so which TOML types a config file
// may give it.
type flagKind int

const (
	kindString   flagKind = iota // a TOML string
	kindInt                      // a TOML integer
	kindFloat                    // a TOML float or integer
	kindBool                     // a TOML boolean
	kindDuration                 // a TOML string holding a Go duration: "30s", "5m"
	kindList                     // one comma-separated value: a string, or a list of strings joined with commas
	kindRepeat                   // a repeatable flag: a string, or a list of strings set one by one
)

// settingFlags are the flags of export, lookup and sql, each command's and
// the others': a variable or a key naming a flag of another command is
// ignored by the commands that do not have it (so one file and one
// environment serve them all), while any other name is a mistake. The
// flags' own definitions are the truth about which command has which flag
// (TestSettingFlagsMatchTheCommands keeps this list in step); the list adds
// which string flags hold comma-separated lists.
var settingFlags = map[string]flagKind{
	// export and lookup
	"base-url":        kindString,
	"duckdb":          kindString, // sql too
	"parquet":         kindString, // sql too
	"staging":         kindString,
	"demo":            kindBool,
	"pii":             kindString,
	"snapshot-date":   kindString, // also a TOML local date: snapshot-date = 2026-11-20
	"concurrency":     kindInt,
	"services":        kindList,
	"log-level":       kindString,
	"progress":        kindString,
	"request-timeout": kindDuration,
	"max-retries":     kindInt,
	"lock-wait":       kindDuration,
	// export
	"history":    kindBool,
	"resume":     kindBool,
	"checkpoint": kindDuration,
	// lookup
	"identity": kindRepeat,
	"address":  kindRepeat,
	"from":     kindRepeat,
	// sql
	"format": kindString,
	// export and lookup, being added with the run summary and the metrics file
	"summary":      kindString,
	"metrics-file": kindString,
	// every command with settings: the file itself (not a key of the file)
	configFlag: kindString,
}

// otherEnv are the CONVSYNC_ variables that are not flags: they are read
// where they are used and never warned about.
var otherEnv = map[string]bool{
	transform.PIIKeyEnv:        true, // the HMAC key of --pii hash: a secret, from the environment only
	faultpoint.EnvVar:          true, // CONVSYNC_TEST_FAULT: fault injection of the tests
	"CONVSYNC_TWILIO_OAI":      true, // the tests' path to Twilio's OpenAPI spec (internal/oaispec)
	"CONVSYNC_REQUIRE_STORAGE": true, // CI: fail instead of skipping the bucket tests (internal/storagetest)
	"CONVSYNC_REQUIRE_SPEC":    true, // CI: fail instead of skipping the spec tests
	"CONVSYNC_TESTBIN":         true, // the storage servers' install folder (internal/storagetest)
	"CONVSYNC_HOLD_DUCKDB":     true, // a helper process of the tests that holds a DuckDB file open
}

// envName is the environment variable of a flag: CONVSYNC_SNAPSHOT_DATE.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// registerConfigFlag adds --config to fs.
func registerConfigFlag(fs *flag.FlagSet) {
	if fs.Lookup(configFlag) == nil {
		fs.String(configFlag, "", "read flags from this TOML `file` (keys are the long flag names; also $"+envName(configFlag)+"); the command line wins over $CONVSYNC_<FLAG> variables, which win over the file")
	}
}

// inspectFlags, set by tests only, receives each command's flag set once
// its settings are applied, and the command stops there (as after -h).
var inspectFlags func(*flag.FlagSet)

// level of a setting's source; higher wins.
const (
	fromFile = 1 + iota
	fromEnv
	fromArgs
)

// setting is one flag's value from the environment or the config file.
type setting struct {
	flag   string
	values []string // one Set each
	level  int
	source string // CONVSYNC_X, or "config file F"
	key    string // in the file
	line   int    // in the file, 0 if unknown
}

func (s setting) errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if s.level == fromEnv {
		return usageError("%s: %s", s.source, msg)
	}
	return fileError(s.source, s.key, s.line, msg)
}

// fileError is a refusal of a config file: one line naming the file and
// the key, exit 2.
func fileError(source, key string, line int, msg string) error {
	if line > 0 {
		msg += fmt.Sprintf(" (line %d)", line)
	}
	return usageError("%s: %s: %s", source, key, msg)
}

// applySettings gives the flags of fs that the command line left unset
// their values from the environment (CONVSYNC_<FLAG>) or, below it, from
// the config file (--config FILE or $CONVSYNC_CONFIG). Each group of
// exclusive flags (sql's duckdb and parquet) takes its value from one
// source: the command line, else the environment, else the file, and
// within one source the first flag of the group that is set.
func applySettings(fs *flag.FlagSet, stderr io.Writer, exclusive ...[]string) error {
	onArgs := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onArgs[f.Name] = true })

	best := map[string]setting{}
	offer := func(s setting) {
		if onArgs[s.flag] {
			return
		}
		if cur, ok := best[s.flag]; !ok || s.level > cur.level {
			best[s.flag] = s
		}
	}

	// The environment.
	envOf := map[string]string{} // variable -> flag, of every command's flags
	for name := range settingFlags {
		envOf[envName(name)] = name
	}
	fs.VisitAll(func(f *flag.Flag) { envOf[envName(f.Name)] = f.Name })
	var unknown []string
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || otherEnv[name] || value == "" {
			continue // empty counts as unset, as for TWILIO_*
		}
		flagName, ok := envOf[name]
		switch {
		case !ok:
			unknown = append(unknown, name)
		case fs.Lookup(flagName) == nil:
			// Another command's flag: not this one's business.
		default:
			offer(setting{flag: flagName, values: []string{value}, level: fromEnv, source: name})
		}
	}
	slices.Sort(unknown)

	// The config file.
	path, pathSource := "", ""
	if f := fs.Lookup(configFlag); f != nil && onArgs[configFlag] {
		path, pathSource = f.Value.String(), "--config"
	} else if s, ok := best[configFlag]; ok {
		path, pathSource = s.values[0], s.source
		if err := fs.Set(configFlag, path); err != nil {
			return s.errorf("%v", err)
		}
	}
	delete(best, configFlag)
	var fromFileOrder []string
	if path != "" {
		file, err := loadConfigFile(path, pathSource, fs)
		if err != nil {
			return err
		}
		for _, s := range file {
			fromFileOrder = append(fromFileOrder, s.flag)
			offer(s)
		}
	}

	// Exclusive groups: the best source of the group, its first flag.
	for _, group := range exclusive {
		top, winner := 0, ""
		for _, name := range group {
			lvl := 0
			if onArgs[name] {
				lvl = fromArgs
			} else if s, ok := best[name]; ok {
				lvl = s.level
			}
			if lvl > top {
				top, winner = lvl, name
			}
		}
		for _, name := range group {
			if name != winner {
				delete(best, name)
			}
		}
	}

	// Apply: the environment's (by flag name), then the file's (in the
	// file's order, which is the order of repeatable subjects).
	var order []string
	for _, name := range slices.Sorted(maps.Keys(best)) {
		if best[name].level == fromEnv {
			order = append(order, name)
		}
	}
	for _, name := range fromFileOrder {
		if s, ok := best[name]; ok && s.level == fromFile {
			order = append(order, name)
		}
	}
	for _, name := range order {
		s := best[name]
		for _, v := range s.values {
			if err := fs.Set(s.flag, v); err != nil {
				return s.errorf("invalid value %q for --%s: %v", v, s.flag, err)
			}
		}
	}

	warnUnknownEnv(fs, stderr, unknown)
	if inspectFlags != nil {
		inspectFlags(fs)
		return errHelp
	}
	return nil
}

// warnUnknownEnv warns, once each, about CONVSYNC_ variables that are no
// flag of any command: probably a misspelt flag, which would otherwise
// silently have no effect.
func warnUnknownEnv(fs *flag.FlagSet, stderr io.Writer, unknown []string) {
	if len(unknown) == 0 {
		return
	}
	lvl := zerolog.WarnLevel
	if f := fs.Lookup("log-level"); f != nil {
		if l, err := zerolog.ParseLevel(f.Value.String()); err == nil && f.Value.String() != "" {
			lvl = l
		}
	}
	log := newLogger(stderr, stderrIsTerminal(stderr), lvl)
	for _, name := range unknown {
		msg := name + " is not a convsync setting: ignored"
		if hint := closest(strings.TrimPrefix(name, envPrefix), append(candidateKeys(fs), configFlag)); hint != "" {
			msg += " (did you mean " + envName(hint) + "?)"
		} else if _, secret := secretKey(strings.TrimPrefix(name, envPrefix)); secret {
			msg += " (credentials are TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET; the PII key is " + transform.PIIKeyEnv + ")"
		}
		log.Warn().Str("variable", name).Msg(msg)
	}
}

// loadConfigFile reads the TOML config file at path and returns its
// settings for the flags of fs, in the file's order. It refuses, naming the
// key: a secret, an unknown key, a value of the wrong TOML type. Keys that
// are flags of another command are checked and left out.
func loadConfigFile(path, pathSource string, fs *flag.FlagSet) ([]setting, error) {
	source := "config file " + path
	buf, err := readConfigFile(path)
	if err != nil {
		if pathSource != "--config" {
			source += " (from " + pathSource + ")"
		}
		return nil, usageError("%s: %v", source, err)
	}
	var doc map[string]any
	md, err := toml.Decode(string(buf), &doc)
	if err != nil {
		// A line that cannot be parsed may hold a secret, and the
		// parser's message may quote it: a secret key is refused as such.
		if key, line, ok := secretLine(buf); ok {
			return nil, secretError(source, key, line)
		}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, usageError("%s: not valid TOML: line %d: %s", source, pe.Position.Line, pe.Message)
		}
		return nil, usageError("%s: not valid TOML: %v", source, err)
	}
	keys := md.Keys()
	// Secrets first, at any depth, so that one inside a table is named
	// as a secret rather than the table as unknown: values named like
	// secrets, then tables.
	for _, leaves := range []bool{true, false} {
		for _, k := range keys {
			if t := md.Type(k...); leaves && (t == "Hash" || t == "ArrayHash") {
				continue
			}
			for _, part := range k {
				if _, secret := secretKey(part); secret {
					return nil, secretError(source, k.String(), keyLine(buf, k))
				}
			}
		}
	}
	var out []setting
	for _, k := range keys {
		if len(k) != 1 {
			continue // inside a table: the table is refused below
		}
		key, name, line := k[0], k.String(), keyLine(buf, k) // name: quoted if need be
		kind, known := settingFlags[key]
		f := fs.Lookup(key)
		if f != nil && !known {
			kind, known = kindOf(f), true
		}
		switch {
		case key == configFlag:
			return nil, fileError(source, name, line, "a config file cannot name another config file (give --config FILE or "+envName(configFlag)+")")
		case !known:
			msg := "unknown key"
			if hint := closest(key, candidateKeys(fs)); hint != "" {
				msg += ", did you mean " + hint + "?"
			} else {
				msg += ": the keys are the long flag names of export, lookup and sql, such as duckdb, parquet, snapshot-date"
			}
			return nil, fileError(source, name, line, msg)
		}
		values, err := tomlValues(key, kind, doc[key], md.Type(key))
		if err != nil {
			return nil, fileError(source, name, line, err.Error())
		}
		if f == nil {
			continue // another command's flag
		}
		out = append(out, setting{flag: key, values: values, level: fromFile, source: source, key: name, line: line})
	}
	return out, nil
}

// readConfigFile reads a config file, refusing one too large to be one.
func readConfigFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err != nil {
		return nil, err
	} else if st.IsDir() {
		return nil, errors.New("is a folder, not a TOML file")
	}
	buf, err := io.ReadAll(io.LimitReader(fh, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(buf) > maxConfigSize {
		return nil, fmt.Errorf("larger than %d KiB: not a convsync config file", maxConfigSize>>10)
	}
	return buf, nil
}

// kindOf is the kind of a flag the settingFlags list does not know.
func kindOf(f *flag.Flag) flagKind {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return kindRepeat // flag.Func: each Set is one more value
	}
	switch g.Get().(type) {
	case bool:
		return kindBool
	case int, int64, uint, uint64:
		return kindInt
	case float64:
		return kindFloat
	case time.Duration:
		return kindDuration
	}
	return kindString
}

// tomlValues turns the TOML value of a key into the strings its flag is Set
// with, refusing a value of the wrong TOML type. typ is the TOML type name.
func tomlValues(key string, kind flagKind, v any, typ string) ([]string, error) {
	got := "got " + tomlTypeName(typ)
	switch kind {
	case kindString:
		switch v := v.(type) {
		case string:
			return []string{v}, nil
		case time.Time:
			if key == "snapshot-date" && v.Location().String() == "date-local" {
				return []string{v.Format(time.DateOnly)}, nil
			}
		}
		return nil, fmt.Errorf("want a string, %s", got)
	case kindInt:
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		msg := "want an integer, " + got
		if s, ok := v.(string); ok {
			if _, err := strconv.ParseInt(s, 10, 64); err == nil {
				msg += fmt.Sprintf(" (write %s = %s, without quotes)", key, s)
			}
		}
		return nil, errors.New(msg)
	case kindFloat:
		switch v := v.(type) {
		case int64:
			return []string{strconv.FormatInt(v, 10)}, nil
		case float64:
			return []string{strconv.FormatFloat(v, 'g', -1, 64)}, nil
		}
		return nil, fmt.Errorf("want a number, %s", got)
	case kindBool:
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		msg := "want true or false, " + got
		if s, ok := v.(string); ok && (s == "true" || s == "false") {
			msg += fmt.Sprintf(" (write %s = %s, without quotes)", key, s)
		}
		return nil, errors.New(msg)
	case kindDuration:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		msg := "want a duration in quotes such as \"30s\" or \"5m\", " + got
		if n, ok := v.(int64); ok {
			msg += fmt.Sprintf(" (write %s = \"%ds\" for seconds)", key, n)
		}
		return nil, errors.New(msg)
	case kindList, kindRepeat:
		switch v := v.(type) {
		case string:
			return []string{v}, nil
		case []any:
			out := make([]string, len(v))
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("want a string or a list of strings, got a list holding %s", goTypeName(e))
				}
				out[i] = s
			}
			if kind == kindList {
				return []string{strings.Join(out, ",")}, nil
			}
			return out, nil
		}
		return nil, fmt.Errorf("want a string or a list of strings, %s", got)
	}
	return nil, fmt.Errorf("unsupported flag kind %d", kind)
}

// tomlTypeName names a TOML type, as MetaData.Type gives it, for people.
func tomlTypeName(typ string) string {
	switch typ {
	case "String":
		return "a string"
	case "Integer":
		return "an integer"
	case "Float":
		return "a float"
	case "Bool":
		return "a boolean"
	case "Datetime":
		return "a date or time"
	case "Array":
		return "a list"
	case "Hash":
		return "a table"
	case "ArrayHash":
		return "a list of tables"
	}
	return "a " + strings.ToLower(typ)
}

// goTypeName names the TOML type of a decoded value.
func goTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date or time"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// secretEnv maps the names of secrets people write into config files to
// the environment variable that holds each.
var secretEnv = map[string]string{
	"account-sid":        "TWILIO_ACCOUNT_SID",
	"auth-token":         "TWILIO_AUTH_TOKEN",
	"api-key":            "TWILIO_API_KEY",
	"api-secret":         "TWILIO_API_SECRET",
	"pii-key":            transform.PIIKeyEnv,
	"twilio-account-sid": "TWILIO_ACCOUNT_SID",
	"twilio-auth-token":  "TWILIO_AUTH_TOKEN",
	"twilio-api-key":     "TWILIO_API_KEY",
	"twilio-api-secret":  "TWILIO_API_SECRET",
	"convsync-pii-key":   transform.PIIKeyEnv,
}

// secretWords in a key's name make it a secret, unless it is a flag.
var secretWords = []string{"token", "secret", "password", "passwd", "key", "credential"}

// secretKey reports whether a config key names a secret, and the
// environment variable the secret belongs in when convsync knows it.
// Credentials and the PII key come from the environment only.
func secretKey(name string) (env string, secret bool) {
	if _, ok := settingFlags[name]; ok {
		return "", false // a flag: not a secret, whatever its name
	}
	n := strings.NewReplacer("_", "-", ".", "-", " ", "-").Replace(strings.ToLower(name))
	if env, ok := secretEnv[n]; ok {
		return env, true
	}
	if strings.HasPrefix(n, "twilio") {
		return "", true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return "", true
		}
	}
	return "", false
}

// secretError refuses a secret in a config file, naming its key, never its
// value.
func secretError(source, key string, line int) error {
	env, _ := secretKey(key)
	if i := strings.LastIndexByte(key, '.'); env == "" && i >= 0 {
		env, _ = secretKey(strings.Trim(key[i+1:], `"`))
	}
	where := "credentials come from TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET, the PII key from " + transform.PIIKeyEnv
	if env != "" {
		where = "set " + env + " instead"
	}
	return fileError(source, key, line, "secrets are not read from a config file, only from the environment (a Kubernetes Secret, the cron job's environment file): "+where)
}

// keyLinePattern matches the key (bare, quoted, dotted) a line starts with,
// before = or inside a table header.
var keyLinePattern = regexp.MustCompile(`^\s*(\[\[?)?\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*(?:=|\]\]?)`)

// lineKeys gives, for each line of a TOML document, the full key it
// defines (a table header's, or the current table's followed by the line's
// key), nil for other lines. Best effort, for messages only: the document
// has been parsed, or does not parse.
func lineKeys(buf []byte) [][]string {
	var out [][]string
	var table []string
	for _, l := range bytes.Split(buf, []byte("\n")) {
		m := keyLinePattern.FindSubmatch(l)
		if m == nil {
			out = append(out, nil)
			continue
		}
		var parts []string
		for _, p := range splitDotted(string(m[2])) {
			parts = append(parts, strings.Trim(strings.TrimSpace(p), `"'`))
		}
		if len(m[1]) > 0 {
			table = parts
			out = append(out, parts)
			continue
		}
		out = append(out, append(slices.Clip(table), parts...))
	}
	return out
}

// splitDotted splits a dotted key at the dots outside quotes.
func splitDotted(s string) []string {
	var out []string
	var quote rune
	start := 0
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '.':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// keyLine is the first line that defines k or a key inside it, 0 if none
// is found.
func keyLine(buf []byte, k toml.Key) int {
	for i, full := range lineKeys(buf) {
		if len(full) >= len(k) && slices.Equal(full[:len(k)], []string(k)) {
			return i + 1
		}
	}
	return 0
}

// secretLine finds a line, of a document that does not parse, whose key
// names a secret.
func secretLine(buf []byte) (string, int, bool) {
	for i, full := range lineKeys(buf) {
		for _, p := range full {
			if _, secret := secretKey(p); secret {
				return toml.Key(full).String(), i + 1, true
			}
		}
	}
	return "", 0, false
}

// candidateKeys are the names a config key may be meant as.
func candidateKeys(fs *flag.FlagSet) []string {
	seen := map[string]bool{}
	for name := range settingFlags {
		seen[name] = true
	}
	fs.VisitAll(func(f *flag.Flag) { seen[f.Name] = true })
	delete(seen, configFlag)
	return slices.Sorted(maps.Keys(seen))
}

// closest returns the candidate name is probably a misspelling of: the same
// after folding case and underscores, or within a small edit distance; ""
// if none is close.
func closest(name string, candidates []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }
	n := norm(name)
	best, bestDist := "", 0
	for _, c := range slices.Sorted(slices.Values(candidates)) {
		d := editDistance(n, norm(c))
		limit := 2
		if len(c) <= 5 {
			limit = 1
		}
		if d <= limit && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
