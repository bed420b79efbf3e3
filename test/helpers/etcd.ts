/** A real etcd for the tests: the one `tandem demo --arbiter etcd` and the benchmarks start (src/arbiter/local-etcd.ts). */
export { ETCD_BINARY, freePort, startEtcd, type EtcdCluster, type EtcdMember } from '../../src/arbiter/local-etcd.js';
