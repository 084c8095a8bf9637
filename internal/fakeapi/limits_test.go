package fakeapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDatasetSizeLimits(t *testing.T) {
	memSh := DefaultConfig() // scripts/memory.sh's largest default scale
	memSh.UsersPerService *= 512
	memSh.ConversationsPerService *= 512
	for _, tc := range []struct {
		name  string
		cfg   DatasetConfig
		field string // "" with wantErr: the row total
		err   bool
	}{
		{"default", DefaultConfig(), "", false},
		{"demo", DemoConfig(), "", false},
		{"zero", DatasetConfig{}, "", false},
		{"memory.sh x512", memSh, "", false},
		{"services", DatasetConfig{Services: MaxDatasetSize + 1, UsersPerService: 1, ConversationsPerService: 1}, "Services", true},
		{"users", DatasetConfig{UsersPerService: 5_000_000}, "UsersPerService", true},
		{"conversations", DatasetConfig{ConversationsPerService: 1 << 40}, "ConversationsPerService", true},
		{"participants", DatasetConfig{ParticipantsPerConversation: 1 << 62}, "ParticipantsPerConversation", true},
		{"large", DatasetConfig{LargeConversationParticipants: MaxDatasetSize + 1}, "LargeConversationParticipants", true},
		{"busy", DatasetConfig{BusyUserConversations: 2_000_000}, "BusyUserConversations", true},
		{"product", DatasetConfig{Services: 100, ConversationsPerService: 10_000, ParticipantsPerConversation: 10}, "", true},
		{"product at max sizes", DatasetConfig{Services: MaxDatasetSize, UsersPerService: MaxDatasetSize, ConversationsPerService: MaxDatasetSize,
			ParticipantsPerConversation: MaxDatasetSize, LargeConversationParticipants: MaxDatasetSize}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !tc.err {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if n := tc.cfg.EstimatedRows(); n <= 0 || n > MaxDatasetRows {
					t.Errorf("EstimatedRows %d", n)
				}
				return
			}
			var se *SizeError
			if !errors.As(err, &se) {
				t.Fatalf("Validate: %v, want a *SizeError", err)
			}
			msg := err.Error()
			if se.Field != tc.field || strings.Contains(msg, "\n") || se.Value <= se.Limit {
				t.Errorf("SizeError %+v: %q", se, msg)
			}
			if tc.field != "" && (se.Limit != MaxDatasetSize || !strings.Contains(msg, "DatasetConfig."+tc.field) || !strings.Contains(msg, fmt.Sprint(MaxDatasetSize))) {
				t.Errorf("message %q does not name the field and limit", msg)
			}
			if tc.field == "" && (se.Limit != MaxDatasetRows || !strings.Contains(msg, fmt.Sprint(MaxDatasetRows))) {
				t.Errorf("message %q does not name the row limit", msg)
			}
			// Start refuses it without generating anything.
			start := time.Now()
			cfg := tc.cfg
			if s, err := Start("127.0.0.1:0", Options{Config: &cfg}); err == nil || err.Error() != msg {
				if s != nil {
					s.Close()
				}
				t.Errorf("Start: %v, want %q", err, msg)
			}
			// NewDataset and New panic with the same error.
			for name, f := range map[string]func(){
				"NewDataset": func() { NewDataset(tc.cfg) },
				"New":        func() { New(Options{Config: &cfg}) },
			} {
				func() {
					defer func() {
						if r := recover(); r == nil || fmt.Sprint(r) != msg {
							t.Errorf("%s: recovered %v, want %q", name, r, msg)
						}
					}()
					f()
				}()
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusals took %v", d)
			}
		})
	}
}

func TestStartWithConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed, cfg.Services = 77, 2
	s := startServer(t, Options{Dataset: nil, Config: &cfg})
	if got := s.Dataset().Config(); got != cfg.withDefaults() || len(s.Dataset().Services()) != 2 {
		t.Errorf("dataset config %+v", got)
	}
}
