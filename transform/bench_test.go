package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/valyala/fastjson"

	"github.com/convsync/convsync/schemas"
)

// benchRows is the page size of the benchmarks: a full participants page.
const benchRows = 100

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
		  "last_read_message_index": %d, "last_read_timestamp": "2023-01-02T03:04:05.123Z",
		  "links": {"conversation": "https://conversations.twilio.com/v1/Services/IS/Conversations/CH"}}`, 1, 2, 3, i, i, i, 4, i, i)
	}
	b.WriteString(`], "meta": {"key": "participants", "next_page_url": null}}`)
	return []byte(b.String())
}

// decodeMaps decodes a page into maps, as the pipeline did before fastjson.
func decodeMaps(b *testing.B, body []byte) []map[string]any {
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

// report prints the time per row and the rows per second of a benchmark
// whose every iteration handled benchRows rows. It asserts nothing.
func report(b *testing.B, iterations int) {
	rows := float64(iterations * benchRows)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/rows, "ns/row")
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkTransform measures a page of participants, from the response
// body: decoded by encoding/json into maps (what the pipeline did before),
// parsed by fastjson alone (the floor now), and parsed by fastjson then
// appended into an Arrow batch, per PII mode (what the pipeline does now).
// It prints figures (ns/row, rows/s) and never asserts on time.
//
//	go test ./transform -run '^$' -bench Transform -benchmem
func BenchmarkTransform(b *testing.B) {
	body := participantsPage(benchRows)
	b.Run("encoding-json-maps", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		n := 0
		for b.Loop() {
			if got := decodeMaps(b, body); len(got) != benchRows {
				b.Fatalf("%d rows", len(got))
			}
			n++
		}
		report(b, n)
	})
	b.Run("fastjson-parse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var p fastjson.Parser
		n := 0
		for b.Loop() {
			v, err := p.ParseBytes(body)
			if err != nil {
				b.Fatal(err)
			}
			if got := v.GetArray("participants"); len(got) != benchRows {
				b.Fatalf("%d rows", len(got))
			}
			n++
		}
		report(b, n)
	})
	for _, mode := range []string{PIIKeep, PIIHash, PIIRedact} {
		b.Run("fastjson-parse+append/"+mode, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			p := Policy{Mode: mode, Key: []byte("k")}
			checkNoLeak(b, body, p)
			// Measured with the default allocator: the checked one records
			// a stack trace per allocation, which is not what runs.
			bld := NewBuilder(memory.DefaultAllocator, schemas.Participants, p)
			defer bld.Release()
			var parser fastjson.Parser
			rc := Context{ServiceSID: "IS1", RunID: "r"}
			n := 0
			for b.Loop() {
				v, err := parser.ParseBytes(body)
				if err != nil {
					b.Fatal(err)
				}
				for _, o := range v.GetArray("participants") {
					if err := bld.Append(o, rc); err != nil {
						b.Fatal(err)
					}
				}
				// Batches as the pipeline cuts them (jobs.DefaultBatchRows).
				if bld.Len() >= batchRows {
					bld.NewRecord().Release()
				}
				n++
			}
			bld.NewRecord().Release()
			report(b, n)
		})
	}
}

// batchRows is jobs.DefaultBatchRows, the rows of a record the pipeline
// hands to the sink.
const batchRows = 16384

// checkNoLeak runs pages through a builder over a checked allocator, with
// a batch cut in between, and fails if any memory is not given back.
func checkNoLeak(b *testing.B, body []byte, p Policy) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(b, 0)
	bld := NewBuilder(mem, schemas.Participants, p)
	defer bld.Release()
	var parser fastjson.Parser
	for range 3 {
		v, err := parser.ParseBytes(body)
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range v.GetArray("participants") {
			if err := bld.Append(o, Context{ServiceSID: "IS1", RunID: "r"}); err != nil {
				b.Fatal(err)
			}
		}
		bld.NewRecord().Release()
	}
}
