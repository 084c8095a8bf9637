// Package oaispec finds and reads Twilio's OpenAPI spec for the Conversations
// API, which lives outside the repository (../shared/twilio-oai beside the
// checkout). Tests use it as the source of truth for fields, types, enums and
// PII markings.
package oaispec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvPath names an environment variable that, when set, points at the spec file.
const EnvPath = "CONVSYNC_TWILIO_OAI"

// relPath is where the spec lies relative to a folder that holds shared/.
var relPath = filepath.Join("shared", "twilio-oai", "twilio_conversations_v1.json")

// ErrNotFound is returned when no spec file can be found.
var ErrNotFound = errors.New("twilio-oai spec not found (looked for shared/twilio-oai/twilio_conversations_v1.json beside the checkout; set " + EnvPath + ")")

// Find returns the path of twilio_conversations_v1.json: $CONVSYNC_TWILIO_OAI,
// or shared/twilio-oai/ in the working directory or any of its ancestors.
func Find() (string, error) {
	if p := os.Getenv(EnvPath); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", EnvPath, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, relPath)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNotFound
		}
		dir = parent
	}
}

// Spec is the parsed OpenAPI document.
type Spec struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*Schema `json:"schemas"`
	} `json:"components"`
}

// Schema is the subset of an OpenAPI schema object the tests check.
type Schema struct {
	Ref        string             `json:"$ref"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Nullable   bool               `json:"nullable"`
	Enum       []string           `json:"enum"`
	Pattern    string             `json:"pattern"`
	MinLength  *int               `json:"minLength"`
	MaxLength  *int               `json:"maxLength"`
	Properties map[string]*Schema `json:"properties"`
	Items      *Schema            `json:"items"`
	XTwilio    *struct {
		PII *struct {
			Handling string `json:"handling"`
		} `json:"pii"`
	} `json:"x-twilio"`
}

// PII returns the field's x-twilio.pii handling ("standard", "sensitive") or "".
func (s *Schema) PII() string {
	if s == nil || s.XTwilio == nil || s.XTwilio.PII == nil {
		return ""
	}
	return s.XTwilio.PII.Handling
}

// Load finds and parses the spec.
func Load() (*Spec, error) {
	p, err := Find()
	if err != nil {
		return nil, err
	}
	buf, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(buf, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return &s, nil
}

// Resolve follows a local $ref ("#/components/schemas/NAME") and returns the
// schema it names; a schema without $ref is returned as it is.
func (s *Spec) Resolve(sc *Schema) (*Schema, error) {
	if sc == nil || sc.Ref == "" {
		return sc, nil
	}
	name, ok := strings.CutPrefix(sc.Ref, "#/components/schemas/")
	if !ok {
		return nil, fmt.Errorf("unsupported $ref %q", sc.Ref)
	}
	r, ok := s.Components.Schemas[name]
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such schema", sc.Ref)
	}
	return r, nil
}

// Component returns the named component schema.
func (s *Spec) Component(name string) (*Schema, error) {
	c, ok := s.Components.Schemas[name]
	if !ok {
		return nil, fmt.Errorf("spec has no schema %q", name)
	}
	return c, nil
}

// EnvRequire set to 1 makes a missing spec fail the tests that need it
// instead of skipping them; CI sets it.
const EnvRequire = "CONVSYNC_REQUIRE_SPEC"

// SkipOrFail ends a test that cannot find the spec: skipped with err, or
// failed when EnvRequire is set.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("Twilio's OpenAPI spec is required here (%s=1): %v", EnvRequire, err)
	}
	t.Skipf("skipping the checks against Twilio's OpenAPI spec: %v", err)
}
