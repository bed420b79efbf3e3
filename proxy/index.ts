/** The COLO proxy: public surface (see proxy/README.md). */
export { Comparator, COMPARATOR_DEFAULTS, after, type CheckpointReason, type CheckpointRequest, type ComparatorOptions, type ComparatorStats, type Decision, type Side } from './compare.js';
export { ProxyError, ProxyErrorCodes, type ProxyErrorCode } from './errors.js';
export { FrameDecoder, MAX_RECORD_BYTES, encodeFrame, type Frame, type FrameDecoderOptions } from './framing.js';
export { NotifyDecoder, NotifyWords, MAX_NOTIFY_BYTES, encodeNotify, type NotifyWord, type NotifyDirection } from './notify.js';
export { decodePacket, type Packet, type PacketKind } from './packet.js';
export { ColoComparator, EXPIRED_SCAN_CYCLE_DEFAULT_MS, type ColoComparatorEvents, type ColoComparatorOptions } from './colo-comparator.js';
export { ProxyServer, type PortName, type ProxyServerEvents, type ProxyServerOptions } from './server.js';
export { DECISION_BUCKETS_S, ProxyMetrics, ProxyMetricsServer } from './metrics.js';
