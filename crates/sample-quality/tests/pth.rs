//! PyTorch state dicts written by PyTorch itself (`tests/fixtures/write_pth.py`) in its zip
//! format and in its pre-1.6 format read back to the same values, including an integer scalar, a
//! double vector and a view at an offset into a larger storage; damaged files are refused.

use std::path::PathBuf;

use sample_quality::pth::read_state_dict;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn both_formats_read_the_values_pytorch_wrote() -> anyhow::Result<()> {
    for file in ["state_zip.pth", "state_legacy.pth"] {
        let t = read_state_dict(&fixture(file))?;
        assert_eq!(t.len(), 4, "{file}");
        assert_eq!(
            t["layer.weight"].to_vec2::<f32>()?,
            vec![vec![1.5, -2.0, 0.25], vec![3.0, 4.5, -6.0]],
            "{file}"
        );
        assert_eq!(
            t["layer.num_batches_tracked"].to_vec0::<i64>()?,
            7,
            "{file}"
        );
        assert_eq!(
            t["other.double"].to_vec1::<f64>()?,
            vec![1e-300, -2.5, 3.0],
            "{file}"
        );
        // base[4:8] of arange(10) / 4: the view starts 4 elements into its storage.
        assert_eq!(
            t["view.offset"].to_vec1::<f32>()?,
            vec![1.0, 1.25, 1.5, 1.75],
            "{file}"
        );
    }
    Ok(())
}

#[test]
fn damaged_files_are_refused() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let legacy = std::fs::read(fixture("state_legacy.pth"))?;
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &legacy[..legacy.len() - 10])?;
    let err = read_state_dict(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let text = dir.join("text.pth");
    std::fs::write(&text, b"\x80\x02X\x05\x00\x00\x00hello.")?;
    let err = read_state_dict(&text).unwrap_err().to_string();
    assert!(err.contains("magic number"), "{err}");
    assert!(read_state_dict(&dir.join("missing.pth")).is_err());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
