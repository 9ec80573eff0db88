/**
 * Files a node or `cluster up` writes hold users' data, keys, tokens and state: readable by the user
 * running it only (files 0600, folders 0700). Ones an older version made looser are tightened.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';

export const privateFileMode = 0o600;
export const privateFolderMode = 0o700;

/** Makes the folder (and missing parents) 0700, and sets it 0700 if it already existed. */
export async function privateFolder(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: privateFolderMode });
  await chmod(path, privateFolderMode);
}

export async function writePrivateFile(path: string, text: string): Promise<void> {
  await writeFile(path, text, { mode: privateFileMode });
  // writeFile's mode applies only to a new file; one left by an older version is tightened too.
  await chmod(path, privateFileMode);
}
