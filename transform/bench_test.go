package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
)

// participantsPage returns a page of n participants as the API sends it.
func participantsPage(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"participants": [`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"account_sid": "AC%032d", "chat_service_sid": "IS%032d", "conversation_sid": "CH%032d",
		  "sid": "MB%032d", "identity": null, "attributes": "{\"role\": \"driver\", \"n\": %d}",
		  "messaging_binding": {"type": "sms", "address": "+1555%07d", "proxy_address": "+15017122661"},
		  "role_sid": "RL%032d", "date_created": "2016-03-24T21:05:50Z", "date_updated": "2016-03-24T21:05:50Z",
		  "url": "https://conversations.twilio.com/v1/Services/IS/Conversations/CH/Participants/MB%d",
		  "last_read_message_index": %d, "last_read_timestamp": "2023-01-02T03:04:05.123Z"}`, 1, 2, 3, i, i, i, 4, i, i)
	}
	b.WriteString(`], "meta": {"key": "participants"}}`)
	return []byte(b.String())
}

func decodePage(b *testing.B, body []byte) []map[string]any {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var page struct {
		Participants []map[string]any `json:"participants"`
	}
	if err := d.Decode(&page); err != nil {
		b.Fatal(err)
	}
	return page.Participants
}

// BenchmarkTransform measures JSON pages to Arrow batches, per PII mode,
// against decoding the JSON alone (the floor any client pays): the
// of-decode metric is the time of decode+transform over decode alone.
//
//	go test ./transform -run '^$' -bench Transform
func BenchmarkTransform(b *testing.B) {
	body := participantsPage(100)
	var decodeNs float64
	b.Run("decode-only", func(b *testing.B) {
		for range b.N {
			decodePage(b, body)
		}
		decodeNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(100*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	for _, mode := range []string{PIIKeep, PIIHash, PIIRedact} {
		b.Run(mode, func(b *testing.B) {
			bld := NewBuilder(memory.DefaultAllocator, schemas.Participants, Policy{Mode: mode, Key: []byte("k")})
			defer bld.Release()
			for range b.N {
				for _, o := range decodePage(b, body) {
					if err := bld.Append(o, Context{ServiceSID: "IS1", RunID: "r"}); err != nil {
						b.Fatal(err)
					}
				}
				bld.NewRecord().Release()
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(100*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			if decodeNs > 0 {
				b.ReportMetric(ns/decodeNs, "of-decode")
			}
		})
	}
}
