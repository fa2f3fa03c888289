// The release platform name of a (process.platform, process.arch) pair.
import type { Platform } from '../schemas/common.js';

export function platformNameOf(os: string, arch: string): Platform | null {
  if (arch !== 'x64' && !(os === 'darwin' && arch === 'arm64')) return null;
  if (os === 'linux') return 'linux-x64';
  if (os === 'win32') return 'windows-x64';
  if (os === 'darwin') return arch === 'arm64' ? 'darwin-arm64' : 'darwin-x64';
  return null;
}
