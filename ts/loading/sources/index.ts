/** Model sources: where checkpoint files come from (disk, URL, Hugging Face hub, Blobs). */
export { type ByteRange, type ModelSource, checkFileName, isModelSource } from './types.js';
export { LocalSource, localSource, type LocalSourceOptions } from './local.js';
export { UrlSource, urlSource, type UrlSourceOptions } from './url.js';
export { HubSource, hubSource, isHubId, hubEndpointFromEnv, DEFAULT_HUB_ENDPOINT, type HubSourceOptions } from './hub.js';
export { BlobSource, blobSource, type BlobInput, type BlobSourceOptions } from './blob.js';
export { resolveSource, type SourceInput, type ResolveSourceOptions } from './resolve.js';
export { listWeightFiles, parseShardIndex, type WeightFiles, type WeightFormat, type ListWeightFilesOptions } from './sharding.js';
export { ProgressTracker, trackReads, type ProgressEvent, type ProgressCallback, type ProgressTrackerOptions, type DownloadProgress } from './progress.js';
