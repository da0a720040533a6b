package client

import "github.com/beaconhq/beacon/api/beaconpb"

// Config is the agent's Config service (get, put, delete, list, watch
// of the keys under config/). config.NewRemote(c.Config()) is a
// config.Source through this agent, and client/viperwatch feeds a viper
// instance from it: both live outside this package, so that an
// application that only registers does not link viper, etcd's client or
// the template renderer.
func (c *Client) Config() beaconpb.ConfigClient { return beaconpb.NewConfigClient(c.conn) }
