package rpc

import (
	"encoding/json"
	"fmt"
)

// Gossip roles.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// MaxGossipMeta is memberlist's limit on node metadata.
const MaxGossipMeta = 512

// GossipMeta is what a member announces in memberlist node metadata. It is
// a hint for discovery, never proof of identity: anyone holding the gossip
// key can claim anything here.
type GossipMeta struct {
	Role string `json:"r"`
	// Addr is the member's TLS port (servers: API and Raft; agents: direct
	// provisioning port, if any).
	Addr string `json:"a,omitempty"`
	// Labels of an agent, for `hpt targets list`.
	Labels map[string]string `json:"l,omitempty"`
}

// Encode returns the metadata bytes, refusing what memberlist cannot carry.
func (m GossipMeta) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode gossip meta: %w", err)
	}
	if len(b) > MaxGossipMeta {
		return nil, fmt.Errorf("gossip meta is %d bytes, memberlist carries at most %d (fewer or shorter labels)", len(b), MaxGossipMeta)
	}
	return b, nil
}

// DecodeGossipMeta parses metadata received from another member.
func DecodeGossipMeta(b []byte) (GossipMeta, error) {
	var m GossipMeta
	if len(b) > MaxGossipMeta {
		return m, fmt.Errorf("gossip meta is %d bytes, over the %d byte limit", len(b), MaxGossipMeta)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode gossip meta: %w", err)
	}
	return m, nil
}

// AgentGossipName is an agent's memberlist name. The prefix keeps target
// names from colliding with server names (an agent often runs on a server).
func AgentGossipName(target string) string { return "agent:" + target }
