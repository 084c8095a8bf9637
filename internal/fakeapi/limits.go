package fakeapi

import "fmt"

// Dataset size ceilings. A Dataset lives in memory (about 1 KB per user,
// conversation or participant row), so NewDataset and Start refuse
// configurations that would exhaust it instead of running out of memory.
const (
	// MaxDatasetSize is the ceiling of every single DatasetConfig size.
	MaxDatasetSize = 1_000_000
	// MaxDatasetRows is the ceiling of the estimated row count
	// Services × (UsersPerService + ConversationsPerService ×
	// (ParticipantsPerConversation + 1) + LargeConversationParticipants):
	// about 3 GB of memory.
	MaxDatasetRows = 3_000_000
)

// SizeError reports a DatasetConfig beyond MaxDatasetSize or
// MaxDatasetRows.
type SizeError struct {
	// Field is the DatasetConfig field beyond MaxDatasetSize, or "" when
	// the estimated row total is beyond MaxDatasetRows.
	Field string
	// Value is the field's value, or the estimated row total.
	Value int64
	// Limit is MaxDatasetSize or MaxDatasetRows.
	Limit int64
}

func (e *SizeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("fakeapi: DatasetConfig.%s %d is beyond the limit %d", e.Field, e.Value, e.Limit)
	}
	return fmt.Sprintf("fakeapi: the dataset would hold about %d rows "+
		"(Services × (UsersPerService + ConversationsPerService × (ParticipantsPerConversation + 1) + LargeConversationParticipants)), "+
		"beyond the limit %d (about 1 KB of memory a row)", e.Value, e.Limit)
}

// EstimatedRows returns the approximate number of users, conversations and
// participants cfg generates (zero fields taking their defaults), the
// figure MaxDatasetRows bounds. Sizes beyond MaxDatasetSize are clamped to
// it, so the product cannot overflow.
func (c DatasetConfig) EstimatedRows() int64 {
	c = c.withDefaults()
	cl := func(v int) int64 { return int64(min(v, MaxDatasetSize)) }
	return cl(c.Services) * (cl(c.UsersPerService) +
		cl(c.ConversationsPerService)*(cl(c.ParticipantsPerConversation)+1) +
		cl(c.LargeConversationParticipants))
}

// Validate reports, as a *SizeError, a configuration NewDataset refuses:
// a size (after defaults) beyond MaxDatasetSize, or an estimated row count
// (EstimatedRows) beyond MaxDatasetRows. Zero and negative sizes take
// their defaults and are valid.
func (c DatasetConfig) Validate() error {
	d := c.withDefaults()
	for _, f := range []struct {
		name string
		v    int
	}{
		{"Services", d.Services}, {"UsersPerService", d.UsersPerService},
		{"ConversationsPerService", d.ConversationsPerService},
		{"ParticipantsPerConversation", d.ParticipantsPerConversation},
		{"LargeConversationParticipants", d.LargeConversationParticipants},
		{"BusyUserConversations", d.BusyUserConversations},
	} {
		if f.v > MaxDatasetSize {
			return &SizeError{Field: f.name, Value: int64(f.v), Limit: MaxDatasetSize}
		}
	}
	if n := c.EstimatedRows(); n > MaxDatasetRows {
		return &SizeError{Value: n, Limit: MaxDatasetRows}
	}
	return nil
}
