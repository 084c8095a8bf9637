package fakeapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// JSON renders obj exactly as the service-scoped routes
// (/v1/Services/{IS}/...) return it, with absolute URLs on baseURL (e.g.
// "http://127.0.0.1:8080", no trailing slash). obj is one of Configuration,
// Service, User, UserConversation, Conversation, Participant or
// ParticipantConversation (value or pointer); anything else panics.
func (d *Dataset) JSON(baseURL string, obj any) map[string]any {
	return d.render(baseURL, obj, false)
}

// DefaultRouteJSON renders obj as the default-service routes (/v1/Users,
// /v1/Conversations, /v1/ParticipantConversations, ...) return it: URLs and
// links without the /Services/{IS} segment and, for participants, no
// chat_service_sid. Configuration and Service render as in JSON.
func (d *Dataset) DefaultRouteJSON(baseURL string, obj any) map[string]any {
	return d.render(baseURL, obj, true)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func strOrNil(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func boolOrNil(p *bool) any {
	if p == nil {
		return nil
	}
	return *p
}

func timersJSON(t Timers) any {
	if t == nil {
		return nil
	}
	m := map[string]any{}
	for k, v := range t {
		if v == nil {
			m[k] = nil
		} else {
			m[k] = fmtTime(*v)
		}
	}
	return m
}

// bindingJSON renders a messaging binding; full selects the six-key form of
// participant conversations.
func bindingJSON(b *MessagingBinding, full bool) any {
	if b == nil {
		return nil
	}
	m := map[string]any{"type": b.Type}
	add := func(k string, v *string) {
		if v != nil || full {
			m[k] = strOrNil(v)
		}
	}
	add("address", b.Address)
	add("proxy_address", b.ProxyAddress)
	add("projected_address", b.ProjectedAddress)
	add("name", b.Name)
	add("level", b.Level)
	if b.ProjectedAddress != nil && b.Address == nil {
		m["address"] = nil
	}
	return m
}

func (d *Dataset) render(base string, obj any, defaultRoute bool) map[string]any {
	base = strings.TrimRight(base, "/")
	prefix := func(serviceSID string) string {
		if defaultRoute {
			return base + "/v1"
		}
		return base + "/v1/Services/" + serviceSID
	}
	switch o := obj.(type) {
	case *Configuration:
		return d.render(base, *o, defaultRoute)
	case Configuration:
		return map[string]any{
			"account_sid":                   d.accountSID,
			"default_chat_service_sid":      o.DefaultChatServiceSID,
			"default_messaging_service_sid": o.DefaultMessagingServiceSID,
			"default_inactive_timer":        strOrNil(o.DefaultInactiveTimer),
			"default_closed_timer":          strOrNil(o.DefaultClosedTimer),
			"url":                           base + "/v1/Configuration",
			"links": map[string]any{
				"service":  base + "/v1/Services/" + o.DefaultChatServiceSID + "/Configuration",
				"webhooks": base + "/v1/Configuration/Webhooks",
			},
		}
	case *Service:
		return d.render(base, *o, defaultRoute)
	case Service:
		u := base + "/v1/Services/" + o.SID
		return map[string]any{
			"account_sid":   d.accountSID,
			"sid":           o.SID,
			"friendly_name": o.FriendlyName,
			"date_created":  fmtTime(o.DateCreated),
			"date_updated":  fmtTime(o.DateUpdated),
			"url":           u,
			"links": map[string]any{
				"conversations":                  u + "/Conversations",
				"users":                          u + "/Users",
				"roles":                          u + "/Roles",
				"bindings":                       u + "/Bindings",
				"configuration":                  u + "/Configuration",
				"participant_conversations":      u + "/ParticipantConversations",
				"conversation_with_participants": u + "/ConversationWithParticipants",
			},
		}
	case *User:
		return d.render(base, *o, defaultRoute)
	case User:
		u := prefix(o.ChatServiceSID) + "/Users/" + o.SID
		return map[string]any{
			"sid":              o.SID,
			"account_sid":      d.accountSID,
			"chat_service_sid": o.ChatServiceSID,
			"role_sid":         strOrNil(o.RoleSID),
			"identity":         o.Identity,
			"friendly_name":    strOrNil(o.FriendlyName),
			"attributes":       o.Attributes,
			"is_online":        boolOrNil(o.IsOnline),
			"is_notifiable":    boolOrNil(o.IsNotifiable),
			"date_created":     fmtTime(o.DateCreated),
			"date_updated":     fmtTime(o.DateUpdated),
			"url":              u,
			"links":            map[string]any{"user_conversations": u + "/Conversations"},
		}
	case *UserConversation:
		return d.render(base, *o, defaultRoute)
	case UserConversation:
		p := prefix(o.ChatServiceSID)
		return map[string]any{
			"account_sid":             d.accountSID,
			"chat_service_sid":        o.ChatServiceSID,
			"conversation_sid":        o.ConversationSID,
			"unread_messages_count":   intOrNil(o.UnreadMessagesCount),
			"last_read_message_index": intOrNil(o.LastReadMessageIndex),
			"participant_sid":         o.ParticipantSID,
			"user_sid":                o.UserSID,
			"friendly_name":           strOrNil(o.FriendlyName),
			"conversation_state":      o.ConversationState,
			"timers":                  timersJSON(o.Timers),
			"attributes":              o.Attributes,
			"date_created":            fmtTime(o.DateCreated),
			"date_updated":            fmtTime(o.DateUpdated),
			"created_by":              strOrNil(o.CreatedBy),
			"notification_level":      o.NotificationLevel,
			"unique_name":             strOrNil(o.UniqueName),
			"url":                     p + "/Users/" + o.UserSID + "/Conversations/" + o.ConversationSID,
			"links": map[string]any{
				"participant":  p + "/Conversations/" + o.ConversationSID + "/Participants/" + o.ParticipantSID,
				"conversation": p + "/Conversations/" + o.ConversationSID,
			},
		}
	case *Conversation:
		return d.render(base, *o, defaultRoute)
	case Conversation:
		u := prefix(o.ChatServiceSID) + "/Conversations/" + o.SID
		var bindings any
		if o.Bindings != nil {
			if err := json.Unmarshal(o.Bindings, &bindings); err != nil {
				panic(fmt.Sprintf("fakeapi: invalid bindings JSON for %s: %v", o.SID, err))
			}
		}
		return map[string]any{
			"account_sid":           d.accountSID,
			"chat_service_sid":      o.ChatServiceSID,
			"messaging_service_sid": strOrNil(o.MessagingServiceSID),
			"sid":                   o.SID,
			"friendly_name":         strOrNil(o.FriendlyName),
			"unique_name":           strOrNil(o.UniqueName),
			"attributes":            o.Attributes,
			"state":                 o.State,
			"date_created":          fmtTime(o.DateCreated),
			"date_updated":          fmtTime(o.DateUpdated),
			"timers":                timersJSON(o.Timers),
			"url":                   u,
			"links": map[string]any{
				"participants": u + "/Participants",
				"messages":     u + "/Messages",
				"webhooks":     u + "/Webhooks",
				"export":       u + "/Export",
			},
			"bindings": bindings,
		}
	case *Participant:
		return d.render(base, *o, defaultRoute)
	case Participant:
		m := map[string]any{
			"account_sid":             d.accountSID,
			"chat_service_sid":        o.ChatServiceSID,
			"conversation_sid":        o.ConversationSID,
			"sid":                     o.SID,
			"identity":                strOrNil(o.Identity),
			"attributes":              o.Attributes,
			"messaging_binding":       bindingJSON(o.MessagingBinding, false),
			"role_sid":                strOrNil(o.RoleSID),
			"date_created":            fmtTime(o.DateCreated),
			"date_updated":            fmtTime(o.DateUpdated),
			"url":                     prefix(o.ChatServiceSID) + "/Conversations/" + o.ConversationSID + "/Participants/" + o.SID,
			"last_read_message_index": intOrNil(o.LastReadMessageIndex),
			"last_read_timestamp":     nil,
		}
		if o.LastReadTimestamp != nil {
			m["last_read_timestamp"] = o.LastReadTimestamp.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		if defaultRoute {
			delete(m, "chat_service_sid")
		}
		return m
	case *ParticipantConversation:
		return d.render(base, *o, defaultRoute)
	case ParticipantConversation:
		c := prefix(o.ChatServiceSID) + "/Conversations/" + o.ConversationSID
		return map[string]any{
			"account_sid":                   d.accountSID,
			"chat_service_sid":              o.ChatServiceSID,
			"participant_sid":               o.ParticipantSID,
			"participant_user_sid":          strOrNil(o.ParticipantUserSID),
			"participant_identity":          strOrNil(o.ParticipantIdentity),
			"participant_messaging_binding": bindingJSON(o.ParticipantMessagingBinding, true),
			"conversation_sid":              o.ConversationSID,
			"conversation_unique_name":      strOrNil(o.ConversationUniqueName),
			"conversation_friendly_name":    strOrNil(o.ConversationFriendlyName),
			"conversation_attributes":       o.ConversationAttributes,
			"conversation_date_created":     fmtTime(o.ConversationDateCreated),
			"conversation_date_updated":     fmtTime(o.ConversationDateUpdated),
			"conversation_created_by":       strOrNil(o.ConversationCreatedBy),
			"conversation_state":            o.ConversationState,
			"conversation_timers":           timersJSON(o.ConversationTimers),
			"links": map[string]any{
				"participant":  c + "/Participants/" + o.ParticipantSID,
				"conversation": c,
			},
		}
	}
	panic(fmt.Sprintf("fakeapi: cannot render %T", obj))
}
