// The node data directory (SPEC §7).
import path from 'node:path';

export class Home {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get db(): string {
    return path.join(this.root, 'engine.db');
  }
  get downloads(): string {
    return path.join(this.root, 'downloads');
  }
  get services(): string {
    return path.join(this.root, 'services');
  }
  get models(): string {
    return path.join(this.root, 'models');
  }
  /** The content-addressed store of model files, `blobs/sha256/<hex>` (src/store/blobs.ts). */
  get blobs(): string {
    return path.join(this.root, 'blobs', 'sha256');
  }
  get trust(): string {
    return path.join(this.root, 'trust');
  }
  get logs(): string {
    return path.join(this.root, 'logs');
  }
  /** Version folders that failed verification when the records were rebuilt: moved here, never deleted. */
  get quarantine(): string {
    return path.join(this.root, 'quarantine');
  }
  serviceDir(id: string): string {
    return path.join(this.services, id);
  }
  versionDir(id: string, version: string): string {
    return path.join(this.services, id, version);
  }
  stagingDir(id: string, jobId: string): string {
    return path.join(this.services, id, `.staging-${jobId}`);
  }
  archive(id: string, version: string, platform: string, sha256: string): string {
    return path.join(this.downloads, `${id}-${version}-${platform}-${sha256.slice(0, 16)}.zip`);
  }
  modelDir(id: string, version: string): string {
    return path.join(this.models, id, version);
  }
}
