package extract

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/convsync/convsync/internal/secrets"
)

// Credentials authenticate requests with HTTP Basic auth: APIKey and
// APISecret when set, otherwise AccountSID and AuthToken. Formatting a
// Credentials value (String, GoString, any fmt verb, JSON) never reveals the
// AuthToken or APISecret.
type Credentials struct {
	AccountSID string
	AuthToken  string
	APIKey     string
	APISecret  string
}

const redacted = "[REDACTED]"

func redactSecret(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// String returns a representation with the token and secret redacted.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{AccountSID:%q AuthToken:%q APIKey:%q APISecret:%q}",
		c.AccountSID, redactSecret(c.AuthToken), c.APIKey, redactSecret(c.APISecret))
}

// GoString implements fmt.GoStringer with the token and secret redacted.
func (c Credentials) GoString() string { return "extract." + c.String() }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %q,
// ...) prints the redacted form.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.String()))
}

// MarshalJSON encodes the credentials with the token and secret redacted.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"AccountSID": c.AccountSID,
		"AuthToken":  redactSecret(c.AuthToken),
		"APIKey":     c.APIKey,
		"APISecret":  redactSecret(c.APISecret),
	})
}

// basicAuth returns the Basic auth pair: the API key wins when complete.
func (c Credentials) basicAuth() (user, pass string) {
	if c.APIKey != "" && c.APISecret != "" {
		return c.APIKey, c.APISecret
	}
	return c.AccountSID, c.AuthToken
}

// Secrets returns every form in which the credentials' secrets could
// appear in text (secrets.Forms of each pair), so that scrubbing them all
// keeps an echoed Authorization header out of logs and errors.
func (c Credentials) Secrets() []string {
	return append(secrets.Forms(c.AccountSID, c.AuthToken), secrets.Forms(c.APIKey, c.APISecret)...)
}

func (c Credentials) validate() error {
	if c.APIKey != "" || c.APISecret != "" {
		if c.APIKey == "" || c.APISecret == "" {
			return errors.New("credentials: API key and API secret must be set together")
		}
		return nil
	}
	if c.AccountSID == "" || c.AuthToken == "" {
		return errors.New("credentials: need an account SID with an auth token, or an API key with an API secret")
	}
	return nil
}

// Environment variable names read by CredentialsFromEnv.
const (
	envAccountSID = "TWILIO_ACCOUNT_SID"
	envAuthToken  = "TWILIO_AUTH_TOKEN"
	envAPIKey     = "TWILIO_API_KEY"
	envAPISecret  = "TWILIO_API_SECRET"
)

// CredentialsFromEnv reads TWILIO_ACCOUNT_SID together with either
// TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET (the API key wins
// when both are set). getenv is usually os.Getenv. Values are trimmed of
// surrounding white space. The error names the missing variables, never any
// value.
func CredentialsFromEnv(getenv func(string) string) (Credentials, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := Credentials{
		AccountSID: get(envAccountSID),
		AuthToken:  get(envAuthToken),
		APIKey:     get(envAPIKey),
		APISecret:  get(envAPISecret),
	}
	var missing []string
	if c.AccountSID == "" {
		missing = append(missing, envAccountSID)
	}
	switch {
	case c.APIKey != "" || c.APISecret != "":
		if c.APIKey == "" {
			missing = append(missing, envAPIKey)
		}
		if c.APISecret == "" {
			missing = append(missing, envAPISecret)
		}
	case c.AuthToken == "":
		missing = append(missing, envAuthToken+" (or "+envAPIKey+" and "+envAPISecret+")")
	}
	if len(missing) > 0 {
		return Credentials{}, fmt.Errorf("missing environment variable(s): %s", strings.Join(missing, ", "))
	}
	return c, nil
}
