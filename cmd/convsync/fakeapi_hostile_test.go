package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestFakeAPIRefusesAbsurdSizes: sizes that would exhaust memory get exit
// 2 and one line naming the flag and the limit, at once.
func TestFakeAPIRefusesAbsurdSizes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--users", "5000000"}, []string{"--users 5000000", "limit 1000000"}},
		{[]string{"--large-conversation", "1000001"}, []string{"--large-conversation 1000001", "limit 1000000"}},
		{[]string{"--services", "100", "--conversations", "10000", "--participants", "10"}, []string{"--services", "--participants", "limit 3000000"}},
		{[]string{"--demo-data=false", "--services", "1000000", "--users", "1000000", "--conversations", "1000000", "--participants", "1000000"}, []string{"rows", "limit 3000000"}},
	} {
		var out, errb bytes.Buffer
		start := time.Now()
		code := run(append([]string{"fakeapi", "--listen", "127.0.0.1:0"}, tc.args...), &out, &errb)
		lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		if code != 2 || len(lines) != 1 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(last, w) {
				t.Errorf("%v: %q does not say %q", tc.args, last, w)
			}
		}
		if d := time.Since(start); d > 2*time.Second || out.Len() != 0 {
			t.Errorf("%v: took %v, printed %q", tc.args, d, out.String())
		}
	}
}
